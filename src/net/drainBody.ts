import type { IncomingMessage } from "node:http";
import http2, { type Http2ServerRequest, type ServerHttp2Stream } from "node:http2";
import type { Readable } from "node:stream";

/** Most bytes of a refused body read (and thrown away) so that its sender can read the answer; more: the connection is closed. */
export const DRAIN_MAX_BYTES = 64 * 1024 * 1024;

const DRAINED = Symbol("smmf.drained");
type Drainable = Readable & { [DRAINED]?: number };

/**
 * Reads and throws away the rest of a request body that will not be used (too large, compressed, an RPC
 * refused), so the client, still sending, can read the error answer instead of having its connection reset
 * under it (HTTP/1.1), or staying stuck on flow control (HTTP/2), and an HTTP/1.1 connection stays usable.
 * On HTTP/2 the stream itself is read, since the request object may already have let go of it. A body that
 * goes on past `maxBytes` more is cut off: its connection (its stream on HTTP/2) is closed. Draining one body
 * twice reads it once.
 */
export function drainBody(req: IncomingMessage | Http2ServerRequest, maxBytes = DRAIN_MAX_BYTES): void {
  const h2 = "stream" in req ? ((req as Http2ServerRequest).stream as ServerHttp2Stream & Drainable) : undefined;
  const source: Drainable = h2 ?? (req as IncomingMessage & Drainable);
  if (source[DRAINED] !== undefined || source.readableEnded) return;
  source[DRAINED] = 0;
  // HTTP/2: the request object reads the stream and pauses it when nobody reads the request (or it was let go
  // of): it stops being fed, so the stream flows here only.
  if (h2) h2.removeAllListeners("data");
  source.on("data", (chunk: Buffer) => {
    source[DRAINED]! += chunk.length;
    if (source[DRAINED]! <= maxBytes) return;
    if (h2) h2.close(http2.constants.NGHTTP2_CANCEL);
    else (req as IncomingMessage).socket.destroy();
  });
  source.on("error", () => undefined);
  source.resume();
}
