import { createServer, Agent, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUpstreamAgent } from "./createUpstreamAgent.js";
import { finishResponse, readSseData, upstreamRequest } from "./upstreamRequest.js";

// A loopback server whose answer each test sets; it counts the connections it accepts and those that closed.
let answer: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end("ok");
let accepted = 0;
let closed = 0;
const server = createServer((req, res) => {
  req.resume();
  answer(req, res);
});
server.keepAliveTimeout = 60_000;
server.on("connection", (socket: Socket) => {
  accepted++;
  socket.once("close", () => closed++);
});
let base = "";

beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function send(agent: Agent, signal = new AbortController().signal, connectTimeoutMs = 2_000) {
  return upstreamRequest({ url: new URL(`${base}/v1/chat/completions`), headers: {}, body: "{}", agent, connectTimeoutMs, readTimeoutMs: 5_000, signal, upstream: base });
}

const pool = (poolSize = 4) => createUpstreamAgent("http:", { keepAlive: true, poolSize, idleTimeoutMs: 30_000 }) as Agent;

async function collect(res: IncomingMessage, stopAt?: string): Promise<string[]> {
  const out: string[] = [];
  for await (const data of readSseData(res, base)) {
    if (data === stopAt) break;
    out.push(data);
  }
  return out;
}

describe("readSseData", () => {
  it("yields each event's data: CRLF or LF lines, 'data:' with or without a space, multi-line data joined, a last event without its blank line", async () => {
    answer = (_req, res) => {
      res.write("data: one\r\n\r\ndata:two\n\n: a comment\nevent: x\ndata: three\ndata: lines\n\n");
      res.end("data: last\n");
    };
    const agent = pool();
    expect(await collect(await send(agent))).toEqual(["one", "two", "three\nlines", "last"]);
    agent.destroy();
  });
});

describe("readSseData: a slow reader", () => {
  it("pauses the response while many events wait, resumes it as they are taken, and loses none", async () => {
    const count = 2_000;
    answer = (_req, res) => res.end(Array.from({ length: count }, (_, i) => `data: ${i}\n\n`).join(""));
    const agent = pool();
    const res = await send(agent);
    const events = readSseData(res, base);
    const first = await events.next();
    expect(first.value).toBe("0");
    // Everything has arrived by now or is in the socket; the reader holds the response back instead of buffering it all.
    await expect.poll(() => res.isPaused()).toBe(true);
    const rest: string[] = [];
    for await (const data of events) rest.push(data);
    expect(rest).toEqual(Array.from({ length: count - 1 }, (_, i) => String(i + 1)));
    agent.destroy();
  });
});

describe("upstreamRequest and finishResponse: connection reuse", () => {
  it("a stream left at `data: [DONE]` and finished as answered gives its connection back: the next request reuses it", async () => {
    answer = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: a\n\ndata: [DONE]\n\n");
      // The end of the chunked body comes a moment later, as it may from a real upstream.
      setImmediate(() => res.end());
    };
    const agent = pool();
    accepted = 0;
    for (let i = 0; i < 5; i++) {
      const res = await send(agent);
      expect(await collect(res, "[DONE]")).toEqual(["a"]);
      finishResponse(res, true);
      // (The end may have been read already, with the [DONE] event.)
      if (!res.readableEnded) await new Promise((r) => res.once("end", r));
    }
    expect(accepted).toBe(1);
    agent.destroy();
  });

  it("a response given up before its end (not answered) is destroyed with its connection", async () => {
    answer = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: a\n\n"); // and more never comes
    };
    const agent = pool();
    accepted = 0;
    closed = 0;
    const res = await send(agent);
    expect(await collect(res, "a")).toEqual([]);
    finishResponse(res, false);
    await expect.poll(() => closed).toBe(1);
    agent.destroy();
  });

  it("an abort after the response is in whole leaves it alone (no error thrown anywhere), and it can still be read out", async () => {
    answer = (_req, res) => res.end("data: {not json\n\n");
    const agent = pool();
    const abort = new AbortController();
    const res = await send(agent, abort.signal);
    await new Promise((r) => setImmediate(r));
    expect(res.complete).toBe(true);
    abort.abort();
    expect(res.destroyed).toBe(false);
    finishResponse(res, false);
    await new Promise((r) => res.once("end", r));
    agent.destroy();
  });

  it("waiting for a free connection of a full pool counts against the connect timeout, with a message that says so", async () => {
    let release: () => void = () => undefined;
    answer = (_req, res) => {
      res.writeHead(200);
      res.flushHeaders();
      release = () => res.end();
    };
    const agent = pool(1);
    const first = await send(agent);
    const started = Date.now();
    await expect(send(agent, undefined, 200)).rejects.toMatchObject({ code: "unavailable", message: expect.stringMatching(/had no free connection within 200 ms \(all pooled connections busy\)/) });
    expect(Date.now() - started).toBeLessThan(5_000);
    release();
    first.resume();
    await new Promise((r) => first.once("end", r));
    agent.destroy();
  });

  it("a connection the upstream drops as a reused request arrives is retried once on a new connection; a fresh one that fails is not", async () => {
    const seen = new WeakMap<object, number>();
    answer = (req, res) => {
      const n = (seen.get(req.socket) ?? 0) + 1;
      seen.set(req.socket, n);
      if (n > 1) return void req.socket.destroy();
      res.end("fine");
    };
    const agent = pool();
    accepted = 0;
    for (let i = 0; i < 3; i++) {
      const res = await send(agent);
      res.setEncoding("utf8");
      let text = "";
      for await (const c of res) text += c;
      expect(text).toBe("fine");
    }
    expect(accepted).toBeGreaterThanOrEqual(3);
    // A new connection reset before the answer is the upstream's failure: no retry, an unavailable error.
    answer = (req) => void req.socket.destroy();
    const fresh = pool();
    accepted = 0;
    await expect(send(fresh)).rejects.toMatchObject({ code: "unavailable", message: expect.stringMatching(/reset the connection/) });
    expect(accepted).toBe(1);
    agent.destroy();
    fresh.destroy();
  });
});
