import { request as httpRequest, type Agent as HttpAgent, type ClientRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest, type Agent as HttpsAgent } from "node:https";
import { StringDecoder } from "node:string_decoder";
import { SmmfError } from "../errors/SmmfError.js";

export interface UpstreamRequest {
  url: URL;
  headers: Record<string, string>;
  /** JSON body of a POST; none makes a GET. */
  body?: string;
  /** The instance's connection pool (see createUpstreamAgent). */
  agent: HttpAgent | HttpsAgent;
  /** Longest wait for a connection: a free one from the pool, or a new one accepted by the upstream. */
  connectTimeoutMs: number;
  /** Longest silence from the upstream, while waiting for the response and while reading it. */
  readTimeoutMs: number;
  signal: AbortSignal;
  /** Names the upstream in messages (its origin, never its credentials). */
  upstream: string;
  /** A unix socket to connect to instead of the URL's host (a server the worker runs itself). */
  socketPath?: string;
}

/** A network failure as an SMMF error: unavailable, so that the gateway tries another instance. */
export function networkError(err: unknown, upstream: string): SmmfError {
  if (err instanceof SmmfError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if ((err as Error)?.name === "AbortError") return new SmmfError("cancelled", "request cancelled");
  return new SmmfError("unavailable", `upstream ${upstream} ${code === "ECONNRESET" ? "reset the connection" : `is unreachable (${code ?? (err as Error)?.message ?? "error"})`}`);
}

function ignore(): void {}

/**
 * Sockets that have carried a request. Node's `req.reusedSocket` misses a socket handed straight from one
 * request to the next one waiting for it (a full pool), so reuse is told here.
 */
const carried = new WeakSet<object>();

/** Errors of a pooled connection that the upstream closed while it sat idle ("socket hang up" is ECONNRESET). */
const STALE_CODES = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED"]);

/**
 * Sends one request upstream and resolves with the response (any status), over a pooled keep-alive
 * connection where the agent has one free. A connection must be had within `connectTimeoutMs`; after that,
 * `readTimeoutMs` of silence (no headers, no body bytes) destroys it with an `unavailable` error, also while
 * the caller reads the body. Aborting `signal` destroys it at once, until the response ends: a response read
 * to its end (see finishResponse) leaves its connection to the pool. A pooled connection that turns out to
 * have been closed by the upstream (reset before any byte of the answer) is retried once, on a new connection.
 */
export function upstreamRequest(r: UpstreamRequest): Promise<IncomingMessage> {
  return new Promise<IncomingMessage>((resolve, reject) => {
    if (r.signal.aborted) return reject(new SmmfError("cancelled", "request cancelled"));
    send(r, r.agent, resolve, reject);
  });
}

function send(r: UpstreamRequest, agent: HttpAgent | HttpsAgent | false, resolve: (res: IncomingMessage) => void, reject: (err: SmmfError) => void): void {
  const request = r.url.protocol === "https:" ? httpsRequest : httpRequest;
  const headers: Record<string, string> = { accept: "application/json, text/event-stream", ...r.headers };
  if (r.body !== undefined) {
    headers["content-type"] = "application/json";
    headers["content-length"] = String(Buffer.byteLength(r.body));
  }
  const req: ClientRequest = request(r.url, { method: r.body === undefined ? "GET" : "POST", headers, agent: agent as HttpAgent, socketPath: r.socketPath });
  // Answered, or failed for good: later errors (of the body, or a second destroy) are the reader's business.
  let settled = false;
  let response: IncomingMessage | undefined;
  const detach = () => r.signal.removeEventListener("abort", onAbort);
  // Fails the request now: one still waiting for a pooled connection would hear of its destroy only once it got one.
  const fail = (err: SmmfError) => {
    clearTimeout(connectTimer);
    detach();
    if (!settled) {
      settled = true;
      reject(err);
    }
    req.destroy(err);
  };
  // Waiting for a free pooled connection counts as connecting.
  let assigned = false;
  const connectTimer = setTimeout(() => {
    const why = assigned ? `did not accept a connection within ${r.connectTimeoutMs} ms` : `had no free connection within ${r.connectTimeoutMs} ms (all pooled connections busy)`;
    fail(new SmmfError("unavailable", `upstream ${r.upstream} ${why}`));
  }, r.connectTimeoutMs);
  function onAbort(): void {
    // A response already in whole is left to finishResponse (its connection can still be reused).
    if (!req.destroyed && !response?.destroyed && !response?.complete) fail(new SmmfError("cancelled", "request cancelled"));
  }
  r.signal.addEventListener("abort", onAbort, { once: true });
  let reused = false;
  req.once("socket", (socket) => {
    assigned = true;
    if (carried.has(socket)) reused = true;
    else carried.add(socket);
    if (socket.connecting) socket.once("connect", () => clearTimeout(connectTimer));
    else clearTimeout(connectTimer);
  });
  const stalled = () => new SmmfError("unavailable", `upstream ${r.upstream} sent nothing for ${r.readTimeoutMs} ms`);
  req.setTimeout(r.readTimeoutMs, () => req.destroy(stalled()));
  // Not once: a request destroyed again later (an abort after a reset) must not throw.
  req.on("error", (err) => {
    clearTimeout(connectTimer);
    detach();
    if (settled) return;
    settled = true;
    if (agent !== false && reused && !r.signal.aborted && STALE_CODES.has((err as NodeJS.ErrnoException).code ?? "")) {
      // The upstream closed this idle connection as the request went out: once more, on a connection of its own.
      return send(r, false, resolve, reject);
    }
    reject(networkError(err, r.upstream));
  });
  req.once("response", (res) => {
    settled = true;
    response = res;
    clearTimeout(connectTimer);
    // From here the body's reader hears of a stall as such (not as a reset).
    req.setTimeout(0);
    res.setTimeout(r.readTimeoutMs, () => res.destroy(stalled()));
    // Once the response has ended, its connection is the pool's: a later abort must not touch it.
    res.once("end", detach);
    res.once("close", detach);
    // Errors while the body is read (a reset, a stall) reach the reader as SMMF errors.
    res.on("error", ignore);
    resolve(res);
  });
  req.end(r.body);
}

/**
 * Lets go of a response: one whose answer was read in full (the caller saw its end, like `data: [DONE]`)
 * is read on to its last byte in the background, so that its connection goes back to the pool; any other
 * (a cancelled call, a broken stream) is destroyed with its connection.
 */
export function finishResponse(res: IncomingMessage, answered: boolean): void {
  if (res.readableEnded || res.destroyed) return;
  // A response received in whole (even one the caller refused) is read out as well: its connection is sound.
  if (answered || res.complete) res.resume();
  else res.destroy();
}

/** The whole body as text (at most `limit` bytes); errors become SMMF errors. */
export async function readBody(res: IncomingMessage, upstream: string, limit = 64 * 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res) {
      size += (chunk as Buffer).length;
      if (size > limit) throw new SmmfError("unavailable", `upstream ${upstream} sent a response over ${limit} bytes`);
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    throw networkError(err, upstream);
  }
  if (!res.complete) throw new SmmfError("unavailable", `upstream ${upstream} ended the response early`);
  return Buffer.concat(chunks).toString("utf8");
}

/** Events read but not yet taken, above which the response is paused (its bytes wait in the socket). */
const SSE_HIGH_WATER = 64;

/**
 * The `data:` payloads of a server-sent event stream, in order, ending when the stream ends. A stream that
 * breaks (reset, stall) throws an SMMF error. Stopping early (a `break` at `data: [DONE]`) leaves the
 * response as it is, for finishResponse: it is only no longer listened to.
 *
 * Read by the response's events, not by async iteration of it, and without a generator: the relay's hot
 * path (a heap profile put ~5 KB a request on the stream's async iterator, its string decoding and the
 * generator). The response is paused while more than SSE_HIGH_WATER events wait, so a slow reader holds back
 * the upstream instead of buffering its answer.
 */
export function readSseData(res: IncomingMessage, upstream: string): AsyncIterableIterator<string> {
  return new SseData(res, upstream);
}

class SseData implements AsyncIterableIterator<string> {
  private readonly ready: string[] = [];
  private waiting?: { resolve: (r: IteratorResult<string>) => void; reject: (err: unknown) => void };
  private readonly decoder = new StringDecoder("utf8");
  private buffer = "";
  private data: string[] = [];
  private ended = false;
  private error?: SmmfError;
  private paused = false;

  constructor(
    private readonly res: IncomingMessage,
    private readonly upstream: string,
  ) {
    res.on("data", this.onData);
    res.once("end", this.onEnd);
    res.once("error", this.onError);
    res.once("close", this.onClose);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buffer += this.decoder.write(chunk);
    this.lines();
    if (this.ready.length > SSE_HIGH_WATER && !this.paused) {
      this.paused = true;
      this.res.pause();
    }
  };

  private readonly onEnd = (): void => {
    this.buffer += this.decoder.end();
    this.lines();
    if (this.buffer.startsWith("data:")) this.data.push(this.buffer.charCodeAt(5) === 32 ? this.buffer.slice(6) : this.buffer.slice(5));
    this.buffer = "";
    if (this.data.length > 0) this.push(this.data.join("\n"));
    this.data = [];
    this.finish();
  };

  private readonly onError = (err: unknown): void => {
    this.finish(networkError(err, this.upstream));
  };

  /** Closed without its end (destroyed, reset): the stream broke. */
  private readonly onClose = (): void => {
    if (!this.ended) this.finish(networkError(Object.assign(new Error("aborted"), { code: "ECONNRESET" }), this.upstream));
  };

  /** Splits the buffer's whole lines into events. */
  private lines(): void {
    let buffer = this.buffer;
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.charCodeAt(newline - 1) === 13 ? buffer.slice(0, newline - 1) : buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (this.data.length > 0) this.push(this.data.length === 1 ? this.data[0] : this.data.join("\n"));
        this.data = [];
      } else if (line.startsWith("data:")) {
        this.data.push(line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5));
      }
    }
    this.buffer = buffer;
  }

  private push(data: string): void {
    const w = this.waiting;
    if (w) {
      this.waiting = undefined;
      w.resolve({ done: false, value: data });
    } else this.ready.push(data);
  }

  private finish(error?: SmmfError): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.detach();
    const w = this.waiting;
    this.waiting = undefined;
    if (!w) return;
    if (error) w.reject(error);
    else w.resolve({ done: true, value: undefined });
  }

  private detach(): void {
    this.res.off("data", this.onData);
    this.res.off("end", this.onEnd);
    this.res.off("error", this.onError);
    this.res.off("close", this.onClose);
  }

  next(): Promise<IteratorResult<string>> {
    if (this.ready.length > 0) {
      const value = this.ready.shift()!;
      if (this.paused && this.ready.length <= SSE_HIGH_WATER / 2) {
        this.paused = false;
        this.res.resume();
      }
      return Promise.resolve({ done: false, value });
    }
    if (this.ended) return this.error ? Promise.reject(this.error) : Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** The reader stopped (a `break`): the response is left as it is, for finishResponse. */
  return(): Promise<IteratorResult<string>> {
    if (!this.ended) {
      this.ended = true;
      this.detach();
      // A response left paused is finishResponse's to resume (read out) or destroy.
    }
    this.ready.length = 0;
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<string> {
    return this;
  }
}
