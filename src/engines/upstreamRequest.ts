import { request as httpRequest, type Agent as HttpAgent, type IncomingMessage } from "node:http";
import { request as httpsRequest, type Agent as HttpsAgent } from "node:https";
import { SmmfError } from "../errors/SmmfError.js";

export interface UpstreamRequest {
  url: URL;
  headers: Record<string, string>;
  /** JSON body of a POST; none makes a GET. */
  body?: string;
  agent: HttpAgent | HttpsAgent;
  connectTimeoutMs: number;
  /** Longest silence from the upstream, while waiting for the response and while reading it. */
  readTimeoutMs: number;
  signal: AbortSignal;
  /** Names the upstream in messages (its origin, never its credentials). */
  upstream: string;
}

/** A network failure as an SMMF error: unavailable, so that the gateway tries another instance. */
export function networkError(err: unknown, upstream: string): SmmfError {
  if (err instanceof SmmfError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if ((err as Error)?.name === "AbortError") return new SmmfError("cancelled", "request cancelled");
  return new SmmfError("unavailable", `upstream ${upstream} ${code === "ECONNRESET" ? "reset the connection" : `is unreachable (${code ?? (err as Error)?.message ?? "error"})`}`);
}

/**
 * Sends one request upstream and resolves with the response (any status). The connection must be made within
 * `connectTimeoutMs`; after that, `readTimeoutMs` of silence (no headers, no body bytes) destroys it with
 * an `unavailable` error, also while the caller reads the body. Aborting `signal` destroys it at once.
 */
export function upstreamRequest(r: UpstreamRequest): Promise<IncomingMessage> {
  return new Promise<IncomingMessage>((resolve, reject) => {
    if (r.signal.aborted) return reject(new SmmfError("cancelled", "request cancelled"));
    const send = r.url.protocol === "https:" ? httpsRequest : httpRequest;
    const headers: Record<string, string> = { accept: "application/json, text/event-stream", ...r.headers };
    if (r.body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(Buffer.byteLength(r.body));
    }
    const req = send(r.url, { method: r.body === undefined ? "GET" : "POST", headers, agent: r.agent as HttpAgent });
    let connectTimer: NodeJS.Timeout | undefined;
    const fail = (err: unknown) => {
      clearTimeout(connectTimer);
      r.signal.removeEventListener("abort", onAbort);
      reject(networkError(err, r.upstream));
    };
    const onAbort = () => req.destroy(new SmmfError("cancelled", "request cancelled"));
    r.signal.addEventListener("abort", onAbort, { once: true });
    req.on("socket", (socket) => {
      if (!socket.connecting) return;
      connectTimer = setTimeout(() => req.destroy(new SmmfError("unavailable", `upstream ${r.upstream} did not accept a connection within ${r.connectTimeoutMs} ms`)), r.connectTimeoutMs);
      socket.once("connect", () => clearTimeout(connectTimer));
    });
    const stalled = () => new SmmfError("unavailable", `upstream ${r.upstream} sent nothing for ${r.readTimeoutMs} ms`);
    req.setTimeout(r.readTimeoutMs, () => req.destroy(stalled()));
    req.once("error", fail);
    req.once("response", (res) => {
      clearTimeout(connectTimer);
      // From here the body's reader hears of a stall as such (not as a reset).
      req.setTimeout(0);
      res.setTimeout(r.readTimeoutMs, () => res.destroy(stalled()));
      res.once("close", () => r.signal.removeEventListener("abort", onAbort));
      // Errors while the body is read (a reset, a stall) reach the reader as SMMF errors.
      res.once("error", () => undefined);
      resolve(res);
    });
    req.end(r.body);
  });
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

/**
 * The `data:` payloads of a server-sent event stream, in order, ending when the stream ends. A stream that
 * breaks (reset, stall) throws an SMMF error.
 */
export async function* readSseData(res: IncomingMessage, upstream: string): AsyncGenerator<string> {
  res.setEncoding("utf8");
  let buffer = "";
  let data: string[] = [];
  try {
    for await (const chunk of res) {
      buffer += chunk as string;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (line === "") {
          if (data.length > 0) yield data.join("\n");
          data = [];
        } else if (line.startsWith("data:")) {
          data.push(line.slice(5).replace(/^ /, ""));
        }
      }
    }
  } catch (err) {
    throw networkError(err, upstream);
  }
  if (data.length > 0) yield data.join("\n");
}
