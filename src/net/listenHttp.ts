import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2, { type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import net, { type Socket } from "node:net";

export type HttpHandler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

export interface HttpListener {
  /** The bound port (useful when 0 was asked for). */
  readonly port: number;
  readonly host: string;
  /** Stops accepting, waits up to `graceMs` for open requests, then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0");

/**
 * Serves one handler on one port for both HTTP/1.1 and cleartext HTTP/2 (h2c with prior knowledge,
 * as gRPC clients use): the first bytes of each connection pick the protocol.
 */
export interface ListenOptions {
  /** Longest wait for a request's headers, in ms; default 30000. */
  headersTimeoutMs?: number;
  /** Longest wait for a whole request (headers and body; not the answer, which may stream), in ms; default 300000. */
  requestTimeoutMs?: number;
  /** Most concurrent streams on one HTTP/2 connection; default 256. */
  maxConcurrentStreams?: number;
}

export async function listenHttp(handler: HttpHandler, host: string, port: number, options: ListenOptions = {}): Promise<HttpListener> {
  const headersTimeout = options.headersTimeoutMs ?? 30_000;
  const h1 = http.createServer(
    {
      keepAliveTimeout: 65_000,
      headersTimeout,
      requestTimeout: Math.max(headersTimeout, options.requestTimeoutMs ?? 300_000),
      // The timeouts above are checked this often.
      connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(headersTimeout / 4))),
    },
    handler,
  );
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? 256 } }, handler);
  const sockets = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  let open = 0;
  let idle: (() => void) | undefined;
  const track = (_req: unknown, res: ServerResponse | Http2ServerResponse) => {
    open++;
    res.once("close", () => {
      open--;
      if (open === 0) idle?.();
    });
  };
  h1.prependListener("request", track);
  h2.prependListener("request", track);
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  const server = net.createServer({ noDelay: true, keepAlive: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const isH2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2 && head.length < H2_PREFACE.length) return;
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      (isH2 ? h2 : h1).emit("connection", socket);
      process.nextTick(() => socket.resume());
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      // The HTTP/1.1 server gets its connections from this one and never listens itself: 'listening' is what
      // starts its checks of the header and request timeouts.
      h1.emit("listening");
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    host,
    async close(graceMs = 0) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Stops the timeout checks too (the server itself was never listening: that is all close() has to do).
      h1.close(() => undefined);
      h1.closeIdleConnections();
      for (const session of sessions) session.close();
      if (open > 0 && graceMs > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          idle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
