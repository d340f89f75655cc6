import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";

/** Most bytes of a refused body read (and thrown away) so that its sender can read the answer; more: the connection is closed. */
export const DRAIN_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Reads and throws away the rest of a request body that will not be used (too large, compressed), so the
 * client, still sending, can read the error answer instead of having its connection reset under it, and an
 * HTTP/1.1 connection stays usable. A body that goes on past `maxBytes` more is cut off: its connection (its
 * stream on HTTP/2) is closed.
 */
export function drainBody(req: IncomingMessage | Http2ServerRequest, maxBytes = DRAIN_MAX_BYTES): void {
  let read = 0;
  req.on("data", (chunk: Buffer) => {
    read += chunk.length;
    if (read <= maxBytes) return;
    if ("stream" in req) req.stream.close();
    else req.socket.destroy();
  });
  req.on("error", () => undefined);
  req.resume();
}
