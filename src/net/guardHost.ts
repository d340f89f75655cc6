import type { HttpHandler } from "./listenHttp.js";
import { isLoopbackHostHeader } from "./loopbackHost.js";

const REFUSED = JSON.stringify({ error: { message: "This server answers only requests addressed to a loopback name (localhost, 127.0.0.1, [::1]).", type: "invalid_request_error", param: null, code: "permission_denied" } });

/**
 * A server listening on loopback answers only requests whose Host names loopback (a page served from another
 * name that resolves to 127.0.0.1 — DNS rebinding — gets 403); elsewhere the handler as it is.
 */
export function guardHost(handler: HttpHandler, loopback: boolean): HttpHandler {
  if (!loopback) return handler;
  return (req, res) => {
    const host = req.headers.host ?? req.headers[":authority"];
    if (isLoopbackHostHeader(typeof host === "string" ? host : undefined)) return handler(req, res);
    req.resume();
    res.writeHead(403, { "content-type": "application/json", "content-length": String(Buffer.byteLength(REFUSED)) });
    res.end(REFUSED);
  };
}
