import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2, { type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import net, { type Socket } from "node:net";
import tls from "node:tls";
import type { CertificateFiles } from "./CertificateFiles.js";

export type HttpHandler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

export interface HttpListener {
  /** The bound port (useful when 0 was asked for). */
  readonly port: number;
  readonly host: string;
  /** Stops accepting, waits up to `graceMs` for open requests, then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0");
const TUNNEL_REFUSED = JSON.stringify({ error: { message: "CONNECT and protocol upgrades are not served", type: "invalid_request_error", param: null, code: "method_not_allowed" } });

/** Largest request head (all headers together), HTTP/1.1 and HTTP/2: more gets 431 (or the stream refused). */
const MAX_HEADER_BYTES = 64 * 1024;

/** TLS on a listener: its identity (reloaded when the files change) and whether peers must present a certificate. */
export interface ListenTls {
  files: CertificateFiles;
  /** mTLS: refuse peers without a certificate that chains to `files.ca`. */
  requireClientCertificate?: boolean;
}

export interface ListenOptions {
  /** Longest wait for a request's headers (and for a TLS handshake), in ms; default 30000. */
  headersTimeoutMs?: number;
  /** Longest wait for a whole request (headers and body; not the answer, which may stream), in ms; default 300000. */
  requestTimeoutMs?: number;
  /** A connection with no request in flight is closed after this long, in ms (HTTP/1.1 keep-alive, idle HTTP/2 sessions); 0: never; default 300000. */
  idleSocketTimeoutMs?: number;
  /** Most open connections; more are closed as they come; default 4096. */
  maxConnections?: number;
  /** Most concurrent streams on one HTTP/2 connection; default 256. */
  maxConcurrentStreams?: number;
  /** Serve HTTPS (HTTP/1.1 and h2 by ALPN) instead of cleartext HTTP/1.1 and h2c. */
  tls?: ListenTls;
}

/**
 * Serves one handler on one port for both HTTP/1.1 and HTTP/2. Cleartext: the first bytes of each connection
 * pick the protocol (h2c with prior knowledge, as gRPC clients use). TLS: ALPN picks it, and the identity
 * is swapped for new connections when its files change.
 */
export async function listenHttp(handler: HttpHandler, host: string, port: number, options: ListenOptions = {}): Promise<HttpListener> {
  const headersTimeout = options.headersTimeoutMs ?? 30_000;
  const idleMs = options.idleSocketTimeoutMs ?? 300_000;
  const h1 = http.createServer(
    {
      maxHeaderSize: MAX_HEADER_BYTES,
      keepAliveTimeout: idleMs,
      headersTimeout,
      requestTimeout: Math.max(headersTimeout, options.requestTimeoutMs ?? 300_000),
      // The timeouts above are checked this often.
      connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(headersTimeout / 4))),
    },
    handler,
  );
  const h2 = http2.createServer(
    {
      settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? 256, maxHeaderListSize: MAX_HEADER_BYTES },
      // Per-session bounds: memory for a session's buffers and headers (MB), header pairs, and how many invalid
      // frames and refused streams (floods, rapid resets) a session may send before it is closed.
      maxSessionMemory: 16,
      maxHeaderListPairs: 256,
      maxSessionInvalidFrames: 100,
      maxSessionRejectedStreams: 100,
    },
    handler,
  );
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
  // CONNECT (proxying) and protocol upgrades (WebSocket) are not served: an answer, not a silent close.
  const refuseTunnel = (_req: IncomingMessage, socket: Socket) => {
    socket.on("error", () => undefined);
    socket.end("HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: " + Buffer.byteLength(TUNNEL_REFUSED) + "\r\n\r\n" + TUNNEL_REFUSED);
  };
  h1.on("connect", refuseTunnel);
  h1.on("upgrade", refuseTunnel);
  h1.prependListener("request", track);
  h2.prependListener("request", track);
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (idleMs > 0) closeWhenIdle(session, idleMs);
  });

  /** Hands a connection to the HTTP/1.1 or the HTTP/2 server; until then it must speak within the header timeout. */
  const dispatch = (socket: Socket, isH2: boolean) => {
    socket.setTimeout(0);
    (isH2 ? h2 : h1).emit("connection", socket);
  };
  const onConnection = (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
  };
  const tlsOptions = options.tls;
  let server: net.Server;
  if (tlsOptions) {
    const secure = (): tls.TlsOptions => ({
      ...tlsOptions.files.current,
      ALPNProtocols: ["h2", "http/1.1"],
      requestCert: tlsOptions.requireClientCertificate === true,
      rejectUnauthorized: tlsOptions.requireClientCertificate === true,
    });
    const tlsServer = tls.createServer({ ...secure(), handshakeTimeout: headersTimeout, noDelay: true, keepAlive: true });
    const stopWatching = tlsOptions.files.onChange(() => tlsServer.setSecureContext(secure()));
    tlsServer.once("close", stopWatching);
    tlsServer.on("connection", onConnection);
    tlsServer.on("secureConnection", (socket: tls.TLSSocket) => {
      socket.on("error", () => socket.destroy());
      dispatch(socket, socket.alpnProtocol === "h2");
    });
    // A failed handshake (no client certificate, another CA, not TLS at all) just ends that connection.
    tlsServer.on("tlsClientError", (_err, socket) => socket.destroy());
    server = tlsServer;
  } else {
    server = net.createServer({ noDelay: true, keepAlive: true }, (socket) => {
      onConnection(socket);
      // A connection that sends nothing is closed by the header timeout (with TLS, the handshake timeout does it).
      socket.setTimeout(headersTimeout, () => socket.destroy());
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const n = Math.min(head.length, H2_PREFACE.length);
        const isH2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
        if (isH2 && head.length < H2_PREFACE.length) return;
        socket.off("data", onData);
        socket.pause();
        socket.unshift(head);
        dispatch(socket, isH2);
        process.nextTick(() => socket.resume());
      };
      socket.on("data", onData);
    });
  }
  server.maxConnections = options.maxConnections ?? 4096;
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

/** Closes an HTTP/2 session (GOAWAY, then the connection) once it has had no open stream for `idleMs`. */
function closeWhenIdle(session: http2.ServerHttp2Session, idleMs: number): void {
  let streams = 0;
  let timer: NodeJS.Timeout | undefined = setTimeout(() => session.close(), idleMs);
  const onStreamClose = () => {
    if (--streams === 0 && !session.closed) timer = setTimeout(() => session.close(), idleMs);
  };
  session.on("stream", (stream) => {
    streams++;
    if (timer) clearTimeout(timer);
    timer = undefined;
    stream.once("close", onStreamClose);
  });
  session.once("close", () => clearTimeout(timer));
}
