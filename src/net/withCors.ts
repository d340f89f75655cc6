import type { HttpHandler } from "./listenHttp.js";

const ALLOWED_HEADERS = "authorization, content-type, x-api-key, api-key, x-request-id, traceparent, tracestate, connect-protocol-version, connect-timeout-ms, x-grpc-web, x-user-agent, grpc-timeout";
const EXPOSED_HEADERS = "x-request-id, x-smmf-instance, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, grpc-status, grpc-message";

/**
 * CORS for the web origins an operator lists (exact origins such as "https://app.example.com", or "*"), and
 * for no other: without a list the handler is left as it is and browsers keep pages of other origins from
 * reading answers. A preflight (OPTIONS with Access-Control-Request-Method) from a listed origin is answered
 * here (204); one from any other origin gets 403. API keys still apply to the requests that follow.
 */
export function withCors(handler: HttpHandler, origins: readonly string[]): HttpHandler {
  if (origins.length === 0) return handler;
  const any = origins.includes("*");
  const listed = new Set(origins);
  return (req, res) => {
    const origin = req.headers.origin;
    const allowed = typeof origin === "string" && (any || listed.has(origin));
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"]) {
      req.resume();
      if (!allowed) {
        res.writeHead(403, { "content-length": "0" });
        return void res.end();
      }
      res.writeHead(204, {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
        "access-control-allow-headers": ALLOWED_HEADERS,
        "access-control-max-age": "600",
        vary: "Origin",
      });
      return void res.end();
    }
    if (allowed) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("access-control-expose-headers", EXPOSED_HEADERS);
      res.setHeader("vary", "Origin");
    }
    handler(req, res);
  };
}
