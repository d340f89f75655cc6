import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { GrpcFrameReader } from "../net/grpcFrames.js";

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, NGHTTP2_CANCEL } = http2.constants;

/** A grpc-message trailer, percent-decoded as gRPC sends it (as it came when it is not well-formed). */
function grpcMessage(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * What went wrong with a connection, for a message that reaches API clients: the error code (ECONNREFUSED,
 * ERR_HTTP2_STREAM_ERROR, ...), never the worker's address (which the gateway's log names).
 */
export function causeOf(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === "string" && code.length > 0 ? code : "connection error";
}

type Waiter<T> = { resolve: (r: IteratorResult<T>) => void; reject: (err: unknown) => void };

/**
 * One gRPC call's response messages, read from its HTTP/2 stream by events (no async iteration of the stream,
 * no generator): each frame is decoded as it arrives and handed to the consumer's next(), or held until it
 * asks (a generation's messages are bounded by its length, so they are not paused); the status comes
 * from the trailers (or a trailers-only answer) at the end, a non-OK one as a ConnectError with its metadata.
 * `return()` (the consumer stopped early) resets the stream, so the worker stops at once; so does the
 * caller's signal.
 */
export class GrpcCall<T> implements AsyncGenerator<T> {
  private readonly queue: T[] = [];
  private waiter?: Waiter<T>;
  private readonly reader = new GrpcFrameReader((bytes) => this.message(bytes));
  private headers?: http2.IncomingHttpHeaders;
  private trailers?: http2.IncomingHttpHeaders;
  /** Set once the call is over: undefined = ended OK. */
  private outcome?: { error?: unknown };
  private streamError?: unknown;

  constructor(
    private readonly stream: http2.ClientHttp2Stream,
    private readonly signal: AbortSignal,
    private readonly decode: (message: Uint8Array) => T,
  ) {
    signal.addEventListener("abort", this, { once: true });
    stream.once("response", (h) => (this.headers = h));
    stream.once("trailers", (t) => (this.trailers = t));
    stream.on("data", (chunk: Buffer) => this.data(chunk));
    stream.once("end", () => this.finish(this.status()));
    stream.on("error", (err) => (this.streamError ??= err));
    // Closed without its end (reset, connection lost, cancelled).
    stream.once("close", () => {
      // (A call that ended well is over by now: no error is made for it.)
      if (!this.outcome) this.finish(this.failure(this.streamError));
    });
  }

  /** A call that failed before it began. */
  static failed<T>(error: unknown): GrpcCall<T> {
    const call = Object.create(GrpcCall.prototype) as GrpcCall<T>;
    Object.assign(call, { queue: [], outcome: { error } });
    return call;
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    if (!this.stream.closed) this.stream.close(NGHTTP2_CANCEL);
    this.finish(new ConnectError("request cancelled", Code.Canceled));
  }

  private data(chunk: Buffer): void {
    if (this.outcome) return;
    if (this.reader.add(chunk)) this.fail(new ConnectError("compressed gRPC messages are not supported", Code.Internal));
  }

  private message(bytes: Uint8Array): void {
    if (this.outcome) return;
    let message: T;
    try {
      message = this.decode(bytes);
    } catch (err) {
      return this.fail(this.failure(err));
    }
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter.resolve({ done: false, value: message });
    } else this.queue.push(message);
  }

  /** The status at the stream's end: undefined when OK. */
  private status(): ConnectError | undefined {
    if (this.signal.aborted) return new ConnectError("request cancelled", Code.Canceled);
    const headers = this.headers;
    if (!headers || Number(headers[HTTP2_HEADER_STATUS]) !== 200 || !String(headers[HTTP2_HEADER_CONTENT_TYPE] ?? "").startsWith("application/grpc")) {
      return new ConnectError(`unexpected response from the worker: HTTP ${headers?.[HTTP2_HEADER_STATUS] ?? "none"}`, Code.Unavailable);
    }
    const status = this.trailers ?? headers;
    const code = Number(status["grpc-status"] ?? NaN);
    if (!Number.isInteger(code)) return new ConnectError("the worker's stream ended without a status", Code.Unavailable);
    if (code === 0) return undefined;
    const metadata = new Headers();
    for (const [key, value] of Object.entries(status)) {
      if (!key.startsWith(":") && key !== "grpc-status" && key !== "grpc-message" && typeof value === "string") metadata.set(key, value);
    }
    return new ConnectError(grpcMessage(String(status["grpc-message"] ?? "")), code as Code, metadata);
  }

  private failure(err: unknown): ConnectError {
    if (err instanceof ConnectError) return err;
    if (this.signal.aborted) return new ConnectError("request cancelled", Code.Canceled);
    return new ConnectError(`the connection to the worker failed (${causeOf(err)})`, Code.Unavailable);
  }

  /** Fails the call now (a bad frame): the stream is reset. */
  private fail(error: ConnectError): void {
    if (!this.stream.closed) this.stream.close(NGHTTP2_CANCEL);
    this.finish(error);
  }

  /** The call is over (the first outcome counts); a waiting consumer hears of it once the queue is empty. */
  private finish(error: ConnectError | undefined): void {
    if (this.outcome) return;
    this.outcome = { error };
    this.signal.removeEventListener("abort", this);
    const waiter = this.waiter;
    if (!waiter) return;
    this.waiter = undefined;
    if (error) waiter.reject(error);
    else waiter.resolve({ done: true, value: undefined });
  }

  next(): Promise<IteratorResult<T>> {
    if (this.queue.length > 0) {
      return Promise.resolve({ done: false, value: this.queue.shift()! });
    }
    const outcome = this.outcome;
    if (outcome) return outcome.error ? Promise.reject(outcome.error) : Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** The consumer stopped: the stream is reset if it has not ended, so the worker stops at once. */
  return(): Promise<IteratorResult<T>> {
    this.queue.length = 0;
    if (!this.outcome) {
      if (this.stream && !this.stream.closed) this.stream.close(NGHTTP2_CANCEL);
      this.finish(undefined);
    }
    this.outcome = {};
    return Promise.resolve({ done: true, value: undefined });
  }

  throw(err: unknown): Promise<IteratorResult<T>> {
    void this.return();
    return Promise.reject(err);
  }

  [Symbol.asyncIterator](): AsyncGenerator<T> {
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.return();
  }
}
