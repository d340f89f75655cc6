import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import type { CertificateFiles } from "../net/CertificateFiles.js";
import { Code, ConnectError } from "@connectrpc/connect";

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, NGHTTP2_CANCEL } = http2.constants;

/** A grpc-message trailer, percent-decoded as gRPC sends it (as it came when it is not well-formed). */
function grpcMessage(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

export interface ChannelOptions {
  /** Called when the connection closes without being asked to (the worker died, or stopped answering PINGs). */
  onLost?: () => void;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** Sent with every call (the cluster credential). */
  headers?: Record<string, string>;
  /** For https addresses: the CA that the worker's certificate must chain to, and this client's certificate (mTLS); new connections take the files as they are now. */
  tls?: CertificateFiles;
}

/**
 * A lean gRPC client channel over one HTTP/2 connection, for the gateway's hot path (Generate): it frames
 * and unframes messages itself and reads status and metadata from the trailers, without the per-call
 * machinery of a general client. The connection is opened on first use, kept alive with PINGs, and
 * reopened on the next call after a loss.
 */
/**
 * What went wrong with a connection, for a message that reaches API clients: the error code (ECONNREFUSED,
 * ERR_HTTP2_STREAM_ERROR, ...), never the worker's address (which the gateway's log names).
 */
function causeOf(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === "string" && code.length > 0 ? code : "connection error";
}

export class GrpcChannel {
  private session?: http2.ClientHttp2Session;
  private closed = false;

  constructor(private readonly address: string, private readonly options: ChannelOptions = {}) {}

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
    const interval = this.options.pingIntervalMs ?? 5_000;
    const timeout = this.options.pingTimeoutMs ?? 2_000;
    // PINGs find a worker that hangs (a frozen process keeps its connection open).
    const pingTimer = setInterval(() => {
      if (session.closed || session.destroyed) return;
      const timer = setTimeout(() => session.destroy(), timeout);
      try {
        if (!session.ping((err) => {
          clearTimeout(timer);
          if (err) session.destroy();
        })) clearTimeout(timer);
      } catch {
        clearTimeout(timer);
        session.destroy();
      }
    }, interval);
    pingTimer.unref();
    session.once("close", () => {
      clearInterval(pingTimer);
      // Only the loss of the connection in use counts (one that said GOAWAY first was let go on purpose).
      if (this.session !== session) return;
      this.session = undefined;
      if (!this.closed) this.options.onLost?.();
    });
    session.unref();
    this.session = session;
    return session;
  }

  /** Sends one request message and yields the response messages; throws ConnectError on a non-OK status. */
  async *call(path: string, request: Uint8Array, signal: AbortSignal, metadata?: Record<string, string>): AsyncGenerator<Uint8Array> {
    if (signal.aborted) throw new ConnectError("request cancelled", Code.Canceled);
    let stream: http2.ClientHttp2Stream;
    try {
      const session = this.connect();
      stream = session.request({ ...this.options.headers, ...metadata, ":method": "POST", ":path": path, "content-type": "application/grpc+proto", te: "trailers" }, { endStream: false });
    } catch (err) {
      throw new ConnectError(`cannot reach the worker (${causeOf(err)})`, Code.Unavailable);
    }
    const frame = Buffer.allocUnsafe(5 + request.length);
    frame[0] = 0;
    frame.writeUInt32BE(request.length, 1);
    frame.set(request, 5);
    stream.end(frame);

    const onAbort = () => stream.close(NGHTTP2_CANCEL);
    signal.addEventListener("abort", onAbort, { once: true });
    let headers: http2.IncomingHttpHeaders | undefined;
    let trailers: http2.IncomingHttpHeaders | undefined;
    stream.once("response", (h) => (headers = h));
    stream.once("trailers", (t) => (trailers = t));
    let buffered: Buffer = Buffer.alloc(0);
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        while (buffered.length >= 5) {
          const length = buffered.readUInt32BE(1);
          if (buffered.length < 5 + length) break;
          if (buffered[0] !== 0) throw new ConnectError("compressed gRPC messages are not supported", Code.Internal);
          const message = buffered.subarray(5, 5 + length);
          buffered = buffered.subarray(5 + length);
          yield message;
        }
      }
    } catch (err) {
      if (err instanceof ConnectError) throw err;
      if (signal.aborted) throw new ConnectError("request cancelled", Code.Canceled);
      throw new ConnectError(`the connection to the worker failed (${causeOf(err)})`, Code.Unavailable);
    } finally {
      signal.removeEventListener("abort", onAbort);
      // Ended early (cancelled, or an error): reset the stream so the worker stops at once.
      if (!stream.readableEnded && !stream.closed) stream.close(NGHTTP2_CANCEL);
    }
    if (signal.aborted) throw new ConnectError("request cancelled", Code.Canceled);
    const status = trailers ?? headers;
    if (!headers || Number(headers[HTTP2_HEADER_STATUS]) !== 200 || !String(headers[HTTP2_HEADER_CONTENT_TYPE] ?? "").startsWith("application/grpc")) {
      throw new ConnectError(`unexpected response from the worker: HTTP ${headers?.[HTTP2_HEADER_STATUS] ?? "none"}`, Code.Unavailable);
    }
    const code = Number(status?.["grpc-status"] ?? NaN);
    if (!Number.isInteger(code)) throw new ConnectError("the worker's stream ended without a status", Code.Unavailable);
    if (code !== 0) {
      const metadata = new Headers();
      for (const [key, value] of Object.entries(status ?? {})) {
        if (!key.startsWith(":") && key !== "grpc-status" && key !== "grpc-message" && typeof value === "string") metadata.set(key, value);
      }
      throw new ConnectError(grpcMessage(String(status?.["grpc-message"] ?? "")), code as Code, metadata);
    }
  }

  close(): void {
    this.closed = true;
    this.session?.destroy();
    this.session = undefined;
  }
}
