import { connect, type Socket } from "node:net";

/** Raw HTTP/1.1 and HTTP/2 on a TCP socket: what node:http would refuse to send, sent as bytes. */

export interface RawHttp1Result {
  /** Statuses of the complete responses read, in order (interim 1xx left out). */
  statuses: number[];
  /** Bodies of those responses (at most 64 KiB each). */
  bodies: string[];
  /** How the exchange ended: the server closed (FIN), reset (RST), the answers were all read, or the time ran out. */
  ended: "server-closed" | "server-reset" | "answered" | "timeout" | "client-closed";
  error?: string;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Parses as many complete HTTP/1.1 responses as `data` holds; `eof`: the connection has ended (a body without length ends there). */
export function parseResponses(data: Buffer, eof: boolean): { statuses: number[]; bodies: string[] } {
  const statuses: number[] = [];
  const bodies: string[] = [];
  let at = 0;
  for (;;) {
    const headEnd = data.indexOf("\r\n\r\n", at, "latin1");
    if (headEnd < 0) break;
    const head = data.subarray(at, headEnd).toString("latin1");
    const lines = head.split("\r\n");
    const m = /^HTTP\/\d\.\d (\d{3})/.exec(lines[0]);
    if (!m) break;
    const status = Number(m[1]);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const i = line.indexOf(":");
      if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    let bodyStart = headEnd + 4;
    if (status >= 100 && status < 200) {
      at = bodyStart;
      continue;
    }
    let body: Buffer;
    if (headers.get("transfer-encoding")?.toLowerCase().includes("chunked")) {
      const parts: Buffer[] = [];
      let p = bodyStart;
      let complete = false;
      for (;;) {
        const lineEnd = data.indexOf("\r\n", p, "latin1");
        if (lineEnd < 0) break;
        const size = parseInt(data.subarray(p, lineEnd).toString("latin1"), 16);
        if (!Number.isFinite(size)) break;
        if (size === 0) {
          const trailerEnd = data.indexOf("\r\n\r\n", lineEnd, "latin1");
          if (trailerEnd < 0 && data.length < lineEnd + 4) break;
          p = trailerEnd >= 0 ? trailerEnd + 4 : lineEnd + 4;
          complete = true;
          break;
        }
        if (data.length < lineEnd + 2 + size + 2) break;
        parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
        p = lineEnd + 2 + size + 2;
      }
      if (!complete) break;
      body = Buffer.concat(parts);
      bodyStart = p;
      at = p;
    } else if (headers.has("content-length")) {
      const length = Number(headers.get("content-length"));
      if (data.length < bodyStart + length) break;
      body = data.subarray(bodyStart, bodyStart + length);
      at = bodyStart + length;
    } else if (status === 204 || status === 304) {
      body = Buffer.alloc(0);
      at = bodyStart;
    } else {
      if (!eof) break;
      body = data.subarray(bodyStart);
      at = data.length;
    }
    statuses.push(status);
    bodies.push(body.subarray(0, 65536).toString("utf8"));
  }
  return { statuses, bodies };
}

/**
 * Writes `steps` to a new connection (each after its delay), then: "wait" reads until `responsesDue` answers
 * came, the server ended the connection, or `timeoutMs` passed; "half-close" first ends the client's side
 * (FIN); "close" closes at once (no answer due).
 */
export async function rawHttp1(port: number, steps: { data: Buffer; delayMs: number }[], after: "wait" | "half-close" | "close", responsesDue: number, timeoutMs: number): Promise<RawHttp1Result> {
  const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  const chunks: Buffer[] = [];
  let ended: RawHttp1Result["ended"] | undefined;
  let error: string | undefined;
  let wake: (() => void) | undefined;
  const finished = new Promise<void>((resolve) => (wake = resolve));
  socket.on("data", (chunk: Buffer) => {
    chunks.push(chunk);
    if (responsesDue > 0 && parseResponses(Buffer.concat(chunks), false).statuses.length >= responsesDue) {
      ended ??= "answered";
      wake?.();
    }
  });
  socket.on("end", () => {
    ended ??= "server-closed";
    wake?.();
  });
  socket.on("error", (err: NodeJS.ErrnoException) => {
    error = err.code ?? err.message;
    ended ??= err.code === "ECONNRESET" || err.code === "EPIPE" ? "server-reset" : "server-closed";
    wake?.();
  });
  socket.on("close", () => {
    ended ??= "server-closed";
    wake?.();
  });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
  } catch (err) {
    socket.destroy();
    return { statuses: [], bodies: [], ended: "server-reset", error: (err as NodeJS.ErrnoException).code ?? String(err) };
  }
  for (const step of steps) {
    if (step.delayMs > 0) await sleep(step.delayMs);
    if (socket.destroyed || ended === "server-reset") break;
    await new Promise<void>((resolve) => socket.write(step.data, () => resolve()));
  }
  if (after === "close") {
    await sleep(20);
    ended ??= "client-closed";
    socket.destroy();
  } else {
    if (after === "half-close" && !socket.destroyed) socket.end();
    const timer = setTimeout(() => {
      ended ??= "timeout";
      wake?.();
    }, timeoutMs);
    if (responsesDue === 0 && ended === undefined) {
      // Nothing due: give the server a moment to say something (an error), then stop.
      await Promise.race([finished, sleep(300)]);
      ended ??= "client-closed";
    } else await finished;
    clearTimeout(timer);
    socket.destroy();
  }
  const parsed = parseResponses(Buffer.concat(chunks), true);
  return { ...parsed, ended: ended ?? "client-closed", error };
}

export interface RawH2Result {
  /** The server sent a GOAWAY frame (its error code), or closed without one. */
  goaway?: number;
  closed: boolean;
  error?: string;
}

/** Sends the HTTP/2 preface and `frames` on a new connection; reads what comes back for up to `waitMs`. */
export async function rawHttp2(port: number, frames: Buffer, waitMs: number): Promise<RawH2Result> {
  const socket: Socket = connect({ port, host: "127.0.0.1" });
  const chunks: Buffer[] = [];
  let closed = false;
  let error: string | undefined;
  let wake: (() => void) | undefined;
  const done = new Promise<void>((resolve) => (wake = resolve));
  socket.on("data", (c: Buffer) => chunks.push(c));
  socket.on("error", (err: NodeJS.ErrnoException) => {
    error = err.code ?? err.message;
  });
  socket.on("close", () => {
    closed = true;
    wake?.();
  });
  await new Promise<void>((resolve) => {
    socket.once("connect", resolve);
    socket.once("error", () => resolve());
  });
  if (!socket.destroyed) {
    // Large frame runs are written in pieces, as a client would.
    const all = Buffer.concat([PREFACE, frames]);
    for (let at = 0; at < all.length && !socket.destroyed; at += 64 * 1024) {
      const ok = socket.write(all.subarray(at, at + 64 * 1024));
      if (!ok) await Promise.race([new Promise((r) => socket.once("drain", r)), done]);
    }
  }
  await Promise.race([done, sleep(waitMs)]);
  socket.destroy();
  const data = Buffer.concat(chunks);
  let goaway: number | undefined;
  for (let at = 0; at + 9 <= data.length; ) {
    const length = data.readUIntBE(at, 3);
    const type = data[at + 3];
    if (type === 0x7 && at + 9 + 8 <= data.length) goaway = data.readUInt32BE(at + 9 + 4);
    at += 9 + length;
  }
  return { goaway, closed, error };
}
