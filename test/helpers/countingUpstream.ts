import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { TLSSocket } from "node:tls";

/**
 * How the upstream treats connections: `keep` keeps them open (the normal case); `connection-close` answers
 * every request with `Connection: close`; `close-idle` closes each connection as soon as its answer is out;
 * `drop-reused` drops a connection, unanswered, when a second request comes on it (an upstream that closed
 * an idle connection just as the request went out).
 */
export type ConnectionMode = "keep" | "connection-close" | "close-idle" | "drop-reused";

export interface CountingUpstream {
  /** API root, e.g. https://127.0.0.1:PORT/v1 */
  url: string;
  mode: ConnectionMode;
  /** TCP connections accepted. */
  connections: number;
  /** TLS handshakes completed, and how many of them resumed an earlier session. */
  handshakes: number;
  resumed: number;
  requests: number;
  /** Requests dropped unanswered (drop-reused, or come on a connection already closed). */
  dropped: number;
  /** Answers whose client went away before they were complete. */
  cancelled: number;
  /** Connections open now. */
  open(): number;
  /** Sets every counter to 0. */
  reset(): void;
  close(): Promise<void>;
}

/** The text every completion answers (in three chunks), and its usage. */
export const UPSTREAM_TEXT = "Hello there!";
const PIECES = ["Hello", " there", "!"];

function sseChunk(chat: boolean, text: string, finish: string | null): string {
  const choice = chat ? { index: 0, delta: { content: text }, finish_reason: finish } : { index: 0, text, finish_reason: finish };
  return `data: ${JSON.stringify({ choices: [choice] })}\n\n`;
}

/**
 * A loopback OpenAI-compatible upstream (chat and completions streamed, embeddings) that counts what a
 * client's connection handling costs it: connections, TLS handshakes (and resumptions), requests. A prompt
 * (or last message) "endless" streams one chunk every 10 ms until the client goes away.
 */
export async function startCountingUpstream(tls?: { key: string; cert: string }): Promise<CountingUpstream> {
  const sockets = new Set<Socket>();
  const requestsOn = new WeakMap<Socket, number>();
  const state: CountingUpstream = {
    url: "",
    mode: "keep",
    connections: 0,
    handshakes: 0,
    resumed: 0,
    requests: 0,
    dropped: 0,
    cancelled: 0,
    open: () => sockets.size,
    reset() {
      state.connections = state.handshakes = state.resumed = state.requests = state.dropped = state.cancelled = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };

  function answer(req: IncomingMessage, res: ServerResponse, body: string): void {
    if (state.mode === "connection-close") res.setHeader("connection", "close");
    if (state.mode === "close-idle") res.once("finish", () => req.socket.end());
    if (req.url?.endsWith("/embeddings")) {
      const inputs = (JSON.parse(body) as { input: string[] }).input;
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ data: inputs.map((_, index) => ({ index, embedding: [index, 0.5] })), usage: { prompt_tokens: inputs.length, total_tokens: inputs.length } }));
    }
    const request = JSON.parse(body) as { prompt?: string; messages?: { content: string }[] };
    const chat = request.messages !== undefined;
    const prompt = chat ? request.messages!.at(-1)!.content : request.prompt;
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (prompt === "endless") {
      let finished = false;
      const timer = setInterval(() => res.write(sseChunk(chat, "and", null)), 10);
      res.once("close", () => {
        clearInterval(timer);
        if (!finished) state.cancelled++;
      });
      res.once("finish", () => (finished = true));
      return;
    }
    let out = "";
    for (const piece of PIECES) out += sseChunk(chat, piece, null);
    out += sseChunk(chat, "", "stop");
    out += `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: PIECES.length } })}\n\n`;
    res.end(`${out}data: [DONE]\n\n`);
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const n = (requestsOn.get(req.socket) ?? 0) + 1;
    requestsOn.set(req.socket, n);
    // drop-reused, or a request that came on a connection this side had already closed (close-idle).
    if ((state.mode === "drop-reused" && n > 1) || req.socket.writableEnded) {
      state.dropped++;
      return void req.socket.destroy();
    }
    state.requests++;
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (body += d));
    req.on("end", () => answer(req, res, body));
  }

  const server: Server = tls ? createHttpsServer({ key: tls.key, cert: tls.cert }, handle) : createHttpServer(handle);
  // Idle connections stay open for as long as a test runs, unless a mode closes them.
  server.keepAliveTimeout = 120_000;
  server.on("connection", (socket: Socket) => {
    state.connections++;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("secureConnection", (socket: TLSSocket) => {
    state.handshakes++;
    if (socket.isSessionReused()) state.resumed++;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.url = `${tls ? "https" : "http"}://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return state;
}
