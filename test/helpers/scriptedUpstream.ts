import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** What the upstream answers one request with. */
export interface ScriptedReply {
  /** HTTP status; 200 by default. A non-200 answer sends `body` (JSON) instead of a stream. */
  status?: number;
  body?: unknown;
  /** For a stream request: the `data:` payloads, in order (objects are written as JSON). */
  chunks?: (object | string)[];
  /** Ends the stream with `data: [DONE]` (default true). */
  done?: boolean;
}

export interface RecordedRequest {
  /** e.g. /v1/chat/completions */
  path: string;
  headers: IncomingMessage["headers"];
  /** The parsed JSON body. */
  body: Record<string, unknown>;
}

export interface ScriptedUpstream {
  /** API root, http://127.0.0.1:PORT/v1 */
  url: string;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** The last request received. */
  last(): RecordedRequest;
  /** How to answer from now on: one reply for every request, or a function of the request. */
  script(reply: ScriptedReply | ((request: RecordedRequest) => ScriptedReply)): void;
  close(): Promise<void>;
}

/**
 * A loopback OpenAI-compatible upstream that records each request (path, headers, parsed body) and answers
 * with the script a test gives it: SSE chunks for stream requests (SMMF always asks upstreams for a stream),
 * or a status and a JSON body. Until scripted, it answers a one-chunk "ok" stream.
 */
export async function startScriptedUpstream(): Promise<ScriptedUpstream> {
  let reply: ScriptedReply | ((request: RecordedRequest) => ScriptedReply) = {
    chunks: [{ choices: [{ index: 0, delta: { content: "ok" }, finish_reason: "stop" }] }],
  };
  const sockets = new Set<Socket>();
  const requests: RecordedRequest[] = [];

  function answer(req: IncomingMessage, res: ServerResponse, text: string): void {
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      res.writeHead(400, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ error: { message: "body is not JSON" } }));
    }
    const request: RecordedRequest = { path: req.url ?? "", headers: req.headers, body };
    requests.push(request);
    const r = typeof reply === "function" ? reply(request) : reply;
    const status = r.status ?? 200;
    if (status !== 200 || r.chunks === undefined) {
      res.writeHead(status, { "content-type": "application/json" });
      return void res.end(JSON.stringify(r.body ?? {}));
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    let out = "";
    for (const c of r.chunks) out += `data: ${typeof c === "string" ? c : JSON.stringify(c)}\n\n`;
    if (r.done !== false) out += "data: [DONE]\n\n";
    res.end(out);
  }

  const server: Server = createServer((req, res) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (text += d));
    req.on("end", () => answer(req, res, text));
  });
  server.keepAliveTimeout = 60_000;
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    requests,
    last() {
      const r = requests.at(-1);
      if (!r) throw new Error("the scripted upstream has received no request");
      return r;
    },
    script(next) {
      reply = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
