import http2 from "node:http2";
import { spawn } from "node:child_process";
import net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { GrpcChannel } from "./GrpcChannel.js";
import { grpcFrame } from "../net/grpcFrames.js";

function frame(payload: Buffer): Buffer {
  const out = Buffer.alloc(5 + payload.length);
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}

let server: http2.Http2Server | undefined;
const sessions = new Set<http2.ServerHttp2Session>();
/** The server's TCP connections. */
const connections = new Set<net.Socket>();
afterEach(async () => {
  for (const s of sessions) s.destroy();
  sessions.clear();
  connections.clear();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A gRPC-shaped server: echoes the request message `times` times, then ends with `status`. */
async function startServer(handler: (stream: http2.ServerHttp2Stream, body: Buffer) => void): Promise<string> {
  server = http2.createServer();
  server.on("session", (s) => sessions.add(s));
  server.on("connection", (c: net.Socket) => connections.add(c));
  server.on("stream", (stream) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => handler(stream, Buffer.concat(chunks)));
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

async function collect(channel: GrpcChannel, payload: string, signal = new AbortController().signal): Promise<string[]> {
  const out: string[] = [];
  for await (const m of channel.call("/x.Y/Z", grpcFrame(Buffer.from(payload)), signal)) out.push(Buffer.from(m).toString());
  return out;
}

describe("GrpcChannel", () => {
  it("sends one framed message and yields every framed message of the answer, split across chunks or not", async () => {
    const url = await startServer((stream, body) => {
      expect(body.subarray(5).toString()).toBe("hello");
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      const two = Buffer.concat([frame(Buffer.from("a")), frame(Buffer.from("bb"))]);
      stream.write(two.subarray(0, 3));
      stream.write(two.subarray(3));
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame(Buffer.from("ccc")));
    });
    const channel = new GrpcChannel(url);
    expect(await collect(channel, "hello")).toEqual(["a", "bb", "ccc"]);
    expect(await collect(channel, "hello")).toEqual(["a", "bb", "ccc"]);
    channel.close();
  });

  it("turns a non-OK status into a ConnectError with its code, message and metadata (trailers-only too)", async () => {
    const url = await startServer((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": String(Code.InvalidArgument), "grpc-message": encodeURIComponent("bad temperature"), "smmf-error-code": "invalid_argument" }, { endStream: true });
    });
    const channel = new GrpcChannel(url);
    const err = await collect(channel, "x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toBe("bad temperature");
    expect((err as ConnectError).metadata.get("smmf-error-code")).toBe("invalid_argument");
    channel.close();
  });

  it("answers UNAVAILABLE for a worker that is not there, and tells of a lost connection", async () => {
    let lost = 0;
    let onLost = () => undefined as void;
    const url = await startServer((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end();
    });
    const channel = new GrpcChannel(url, { onLost: () => (lost++, onLost()) });
    await collect(channel, "x");
    expect(lost).toBe(0);
    // The worker dies: its port closes and its connections drop without a GOAWAY (a worker shutting down
    // says GOAWAY, and that is no loss). The channel tells of the loss.
    const toldOfLoss = new Promise<void>((r) => (onLost = r));
    const closing = new Promise<void>((r) => server!.close(() => r()));
    for (const c of connections) c.destroy();
    server = undefined;
    await closing;
    await toldOfLoss;
    expect(lost).toBe(1);
    expect(channel.down).toBe(true);
    // A call now finds nothing there: UNAVAILABLE; the loss is not told again.
    const err = await collect(channel, "x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unavailable);
    expect(lost).toBe(1);
    channel.close();
  });

  it("resets the stream when the caller aborts", async () => {
    // The server's stream closes with the code the client reset it with (NGHTTP2_CANCEL), or without one (0).
    let closedWith!: (rstCode: number) => void;
    const serverStreamClosed = new Promise<number>((r) => (closedWith = r));
    const url = await startServer(() => undefined);
    server!.on("stream", (stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      stream.write(frame(Buffer.from("first")));
      stream.on("close", () => closedWith(stream.rstCode));
    });
    const channel = new GrpcChannel(url);
    const abort = new AbortController();
    const got: string[] = [];
    const err = await (async () => {
      for await (const m of channel.call("/x.Y/Z", grpcFrame(Buffer.from("x")), abort.signal)) {
        got.push(Buffer.from(m).toString());
        abort.abort();
      }
    })().catch((e: unknown) => e);
    expect(got).toEqual(["first"]);
    expect((err as ConnectError).code).toBe(Code.Canceled);
    // The server never ends the stream itself: only the client's reset closes it.
    expect(await serverStreamClosed).toBe(http2.constants.NGHTTP2_CANCEL);
    channel.close();
  });

  it("goes down when the worker stops answering (a cut link), tells of the loss once however many reconnections fail, and comes back when it answers again", async () => {
    const url = await startServer((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame(Buffer.from("ok")));
    });
    // A link that can be cut: while cut, bytes are dropped both ways and connections open but carry nothing.
    let cut = false;
    let accepted = 0;
    const acceptedWaiters: { n: number; resolve: () => void }[] = [];
    const sockets = new Set<net.Socket>();
    const link = net.createServer((client) => {
      accepted++;
      for (const w of acceptedWaiters.filter((x) => accepted >= x.n)) w.resolve();
      const upstream = net.connect(Number(new URL(url).port), "127.0.0.1");
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("error", () => undefined);
        s.on("close", () => sockets.delete(s));
      }
      client.on("data", (d) => cut || upstream.write(d));
      upstream.on("data", (d) => cut || client.write(d));
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((r) => link.listen(0, "127.0.0.1", r));
    const untilAccepted = (n: number) => new Promise<void>((resolve) => (accepted >= n ? resolve() : acceptedWaiters.push({ n, resolve })));

    let lost = 0;
    let restored = 0;
    let onLost = () => undefined as void;
    let onRestored = () => undefined as void;
    const channel = new GrpcChannel(`http://127.0.0.1:${(link.address() as net.AddressInfo).port}`, {
      pingIntervalMs: 100,
      pingTimeoutMs: 200,
      reconnectBaseMs: 20,
      reconnectMaxMs: 100,
      onLost: () => (lost++, onLost()),
      onRestored: () => (restored++, onRestored()),
    });
    try {
      expect(await collect(channel, "x")).toEqual(["ok"]);
      expect(channel.down).toBe(false);

      const wentDown = new Promise<void>((r) => (onLost = r));
      cut = true;
      await wentDown;
      expect(channel.down).toBe(true);
      // Reconnections keep failing (they connect, but no PING is answered) ...
      await untilAccepted(accepted + 3);
      expect(channel.down).toBe(true);
      // ... and the loss was told once.
      expect(lost).toBe(1);

      const cameBack = new Promise<void>((r) => (onRestored = r));
      cut = false;
      await cameBack;
      expect(channel.down).toBe(false);
      expect(restored).toBe(1);
      expect(await collect(channel, "x")).toEqual(["ok"]);
    } finally {
      channel.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => link.close(() => r()));
    }
  });

  it("does not take a worker that answered its PING in time for a silent one when this process's own event loop was held up", async () => {
    // The worker in another process, so that it answers while this one is busy.
    const child = spawn(process.execPath, ["-e", `
      const http2 = require("node:http2");
      const server = http2.createServer();
      server.on("stream", (s) => { s.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true }); s.on("wantTrailers", () => s.sendTrailers({ "grpc-status": "0" })); s.end(); });
      server.listen(0, "127.0.0.1", () => console.log("PORT " + server.address().port));
    `], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      const port = await new Promise<string>((resolve) => child.stdout!.on("data", (d: Buffer) => /PORT (\d+)/.test(d.toString()) && resolve(/PORT (\d+)/.exec(d.toString())![1])));
      let lost = 0;
      const channel = new GrpcChannel(`http://127.0.0.1:${port}`, { pingIntervalMs: 50, pingTimeoutMs: 20, onLost: () => lost++ });
      await collect(channel, "x");
      // Busy for 200 ms at a time, with only a turn of the event loop between: each PING goes out in that turn,
      // its answer arrives while this process is busy, and its timeout is due when the process looks again.
      for (let i = 0; i < 15; i++) {
        const until = performance.now() + 200;
        while (performance.now() < until);
        await new Promise((r) => setImmediate(r));
      }
      expect(lost).toBe(0);
      expect(channel.down).toBe(false);
      channel.close();
    } finally {
      child.kill();
    }
  });
});
