import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { SmmfError } from "../errors/SmmfError.js";
import { allowMethods } from "../net/allowMethods.js";
import { sendJson, type AnyResponse } from "../net/sse.js";
import type { Telemetry } from "../telemetry/Telemetry.js";

/**
 * `GET /api/v1/traffic?seconds=N` (1–600, default 300): this gateway's traffic second by second (requests,
 * errors, completion tokens, mean TTFT), what the web console charts. `recorded` is false while observability is
 * off (nothing is counted then).
 */
export function trafficRoute(telemetry: Telemetry, req: IncomingMessage | Http2ServerRequest, res: AnyResponse): void {
  allowMethods(req, "GET");
  const text = new URL(req.url ?? "/", "http://x").searchParams.get("seconds") ?? "300";
  if (!/^\d{1,3}$/.test(text) || Number(text) < 1 || Number(text) > telemetry.metrics.traffic.seconds) {
    throw new SmmfError("invalid_argument", `'seconds' must be a whole number from 1 to ${telemetry.metrics.traffic.seconds}`, { param: "seconds" });
  }
  sendJson(res, 200, { recorded: telemetry.enabled, ...telemetry.metrics.traffic.series(Number(text)) });
}
