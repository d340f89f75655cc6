import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import type { CertificateFiles } from "../net/CertificateFiles.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { causeOf, GrpcCall } from "./GrpcCall.js";

const identity = (message: Uint8Array): Uint8Array => message;

export interface ChannelOptions {
  /** Called when the connection closes without being asked to (the worker died, or stopped answering PINGs): once per loss, not again for each failed reconnection. */
  onLost?: () => void;
  /** Called when a lost connection is back (a reconnection answered a PING). */
  onRestored?: () => void;
  /** PINGs on an open connection, and how long one may go unanswered (or a connection take to open) before the connection counts as lost. */
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** After a loss, reconnections are tried after this long, doubling (with jitter) up to reconnectMaxMs. */
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /** Sent with every call (the cluster credential). */
  headers?: Record<string, string>;
  /** For https addresses: the CA that the worker's certificate must chain to, and this client's certificate (mTLS); new connections take the files as they are now. */
  tls?: CertificateFiles;
}

/** Defaults: a cut-off worker is noticed within PING interval + timeout (2 s), inside the default lease TTL (3 s). */
export const DEFAULT_PING_INTERVAL_MS = 1_000;
export const DEFAULT_PING_TIMEOUT_MS = 1_000;

/**
 * A lean gRPC client channel over one HTTP/2 connection, for the gateway's hot path (Generate): it frames
 * and unframes messages itself and reads status and metadata from the trailers, without the per-call
 * machinery of a general client. The connection is opened on first use and kept alive with PINGs.
 *
 * Like a gRPC subchannel it has a state: a connection that is lost (closed unasked, a PING unanswered, or
 * not opened in time) makes the channel `down`, and it reconnects in the background with backoff until a
 * connection answers a PING. The gateway does not pick instances behind a down channel, so a worker cut off
 * from the network leaves the pick set within ~2 s, before its etcd lease runs out.
 */
export class GrpcChannel {
  private session?: http2.ClientHttp2Session;
  private closed = false;
  private lost = false;
  private reconnects = 0;
  private reconnectTimer?: NodeJS.Timeout;

  constructor(private readonly address: string, private readonly options: ChannelOptions = {}) {}

  /** True from a lost connection until a new one answers a PING. */
  get down(): boolean {
    return this.lost;
  }

  private restored(): void {
    if (!this.lost || this.closed) return;
    this.lost = false;
    this.reconnects = 0;
    this.options.onRestored?.();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const base = this.options.reconnectBaseMs ?? 250;
    const max = this.options.reconnectMaxMs ?? 2_000;
    const delay = Math.min(max, base * 2 ** this.reconnects++) * (0.8 + 0.4 * Math.random());
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed || !this.lost) return;
      let session: http2.ClientHttp2Session;
      try {
        session = this.connect();
      } catch {
        this.scheduleReconnect();
        return;
      }
      // The connection counts as back when it answers a PING.
      if (session.connecting) session.once("connect", () => this.probe(session));
      else this.probe(session);
    }, delay);
    this.reconnectTimer.unref();
  }

  /**
   * Sends one PING; an answer within the timeout marks the channel up, none destroys the connection (a loss).
   * The timeout is judged after the I/O that is already waiting has been read (setImmediate runs after the
   * poll phase): when this process's own event loop was held up past the timeout, an answer that did arrive
   * in time is not mistaken for a silent worker.
   */
  private probe(session: http2.ClientHttp2Session): void {
    if (session.closed || session.destroyed) return;
    let answered = false;
    const timer = setTimeout(() => setImmediate(() => answered || session.destroy()), this.options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS);
    try {
      session.ping((err) => {
        answered = true;
        clearTimeout(timer);
        if (err) session.destroy();
        else if (this.session === session) this.restored();
      });
    } catch {
      clearTimeout(timer);
      session.destroy();
    }
  }

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const url = new URL(this.address);
    // Under mTLS a cleartext address (one written into etcd by someone else) is never called: prompts go only to certified workers.
    if (this.options.tls && url.protocol !== "https:") throw new Error("this gateway requires TLS to workers (--tls-ca) and the address is not https");
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const session = http2.connect(this.address, {
      createConnection:
        url.protocol === "https:"
          ? () => tls.connect({ host, port: Number(url.port) || 443, servername: net.isIP(host) ? undefined : host, ALPNProtocols: ["h2"], ...this.options.tls?.current }).setNoDelay(true)
          : () => net.connect({ host, port: Number(url.port), noDelay: true }),
    });
    session.on("error", () => undefined);
    // A worker shutting down sends GOAWAY: calls in flight finish, new ones go on a new connection.
    session.once("goaway", () => {
      if (this.session === session) this.session = undefined;
    });
    const interval = this.options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
    const timeout = this.options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS;
    const openedAt = Date.now();
    // PINGs find a worker that hangs or is cut off (its connection stays open but nothing comes back); a
    // connection still opening after interval + timeout (SYNs dropped) is given up the same way.
    const pingTimer = setInterval(() => {
      if (session.closed || session.destroyed) return;
      if (session.connecting) {
        if (Date.now() - openedAt >= interval + timeout) session.destroy();
        return;
      }
      this.probe(session);
    }, interval);
    pingTimer.unref();
    session.once("close", () => {
      clearInterval(pingTimer);
      // Only the loss of the connection in use counts (one that said GOAWAY first was let go on purpose).
      if (this.session !== session) return;
      this.session = undefined;
      if (this.closed) return;
      if (!this.lost) {
        this.lost = true;
        this.options.onLost?.();
      }
      this.scheduleReconnect();
    });
    session.unref();
    this.session = session;
    return session;
  }

  /**
   * Sends one request message, framed (grpcFrame, or a codec's encodeFrame), and yields the response messages
   * (each through `decode`, when given: no second layer of iteration to decode them); throws ConnectError on a
   * non-OK status.
   */
  call(path: string, frame: Buffer, signal: AbortSignal, metadata?: Record<string, string>): AsyncGenerator<Uint8Array>;
  call<T>(path: string, frame: Buffer, signal: AbortSignal, metadata: Record<string, string> | undefined, decode: (message: Uint8Array) => T): AsyncGenerator<T>;
  call<T>(path: string, frame: Buffer, signal: AbortSignal, metadata?: Record<string, string>, decode?: (message: Uint8Array) => T): AsyncGenerator<T | Uint8Array> {
    if (signal.aborted) return GrpcCall.failed(new ConnectError("request cancelled", Code.Canceled));
    let stream: http2.ClientHttp2Stream;
    try {
      const session = this.connect();
      stream = session.request({ ...this.options.headers, ...metadata, ":method": "POST", ":path": path, "content-type": "application/grpc+proto", te: "trailers" }, { endStream: false });
    } catch (err) {
      return GrpcCall.failed(new ConnectError(`cannot reach the worker (${causeOf(err)})`, Code.Unavailable));
    }
    stream.end(frame);
    return new GrpcCall<T | Uint8Array>(stream, signal, decode ?? identity);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.session?.destroy();
    this.session = undefined;
  }
}
