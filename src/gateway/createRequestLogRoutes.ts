import { decodeSegment } from "../net/decodeSegment.js";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { SmmfError } from "../errors/SmmfError.js";
import type { Telemetry } from "../telemetry/Telemetry.js";
import type { RequestLogAccess } from "../telemetry/TelemetryThread.js";
import { allowMethods } from "../net/allowMethods.js";
import { readJsonBody } from "../net/readJsonBody.js";
import { sendJson, type AnyResponse } from "../net/sse.js";

type Req = IncomingMessage | Http2ServerRequest;

const MAX_LIMIT = 1000;

function bad(param: string, message: string): SmmfError {
  return new SmmfError("invalid_argument", message, { param });
}

/** A time given as Unix milliseconds or seconds, or an ISO 8601 date. */
function parseTime(param: string, value: string): number {
  if (/^\d+$/.test(value)) return value.length <= 10 ? Number(value) * 1000 : Number(value);
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw bad(param, `'${param}' must be an ISO 8601 time or Unix seconds or milliseconds`);
  return ms;
}

function log(telemetry: Telemetry): RequestLogAccess {
  if (!telemetry.requestLog) throw new SmmfError("unavailable", "the request log is off on this gateway (requestLog: off, or observability: off)");
  return telemetry.requestLog;
}

/**
 * The request log over REST: `GET /api/v1/requests` (filters `model`, `status`, `since`, `until`; paging with
 * `limit` and the `before` cursor from `next`), `GET /api/v1/requests/{id}`, and
 * `POST /api/v1/requests/{id}/feedback` with `{"score": number, "comment"?: string, "label"?: string}`.
 */
export function createRequestLogRoutes(telemetry: Telemetry, maxBodyBytes: number): (req: Req, res: AnyResponse, path: string) => Promise<boolean> {
  return async (req, res, path) => {
    const parts = path.split("/").slice(3).map(decodeSegment); // ["requests", id?, "feedback"?]
    if (parts[0] !== "requests") return false;
    const [, id, action] = parts;
    if (id === undefined || id === "") {
      allowMethods(req, "GET");
      const q = new URL(req.url ?? "/", "http://x").searchParams;
      const limitText = q.get("limit") ?? "50";
      if (!/^\d+$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > MAX_LIMIT) throw bad("limit", `'limit' must be a whole number from 1 to ${MAX_LIMIT}`);
      const statusText = q.get("status");
      if (statusText !== null && !/^\d{3}$/.test(statusText)) throw bad("status", "'status' must be an HTTP status code, e.g. 200 or 429");
      const page = await log(telemetry).query({
        model: q.get("model") ?? undefined,
        status: statusText === null ? undefined : Number(statusText),
        key: q.get("key") ?? undefined,
        since: q.has("since") ? parseTime("since", q.get("since")!) : undefined,
        until: q.has("until") ? parseTime("until", q.get("until")!) : undefined,
        limit: Number(limitText),
        before: q.get("before") ?? undefined,
      });
      sendJson(res, 200, { object: "list", data: page.data, has_more: page.next !== null, next: page.next });
      return true;
    }
    if (action === undefined) {
      allowMethods(req, "GET");
      const entry = await log(telemetry).get(id);
      if (!entry) throw new SmmfError("not_found", `no request '${id}' in the request log`, { param: "id" });
      sendJson(res, 200, entry);
      return true;
    }
    if (action === "feedback") {
      allowMethods(req, "POST");
      const body = await readJsonBody(req, maxBodyBytes);
      const { score, comment, label } = body;
      if (typeof score !== "number" || !Number.isFinite(score) || score < -100 || score > 100) throw bad("score", "'score' must be a number from -100 to 100 (e.g. 1 and -1 for thumbs up and down)");
      if (comment !== undefined && (typeof comment !== "string" || comment.length > 4000)) throw bad("comment", "'comment' must be a string of at most 4000 characters");
      if (label !== undefined && (typeof label !== "string" || label.length > 100)) throw bad("label", "'label' must be a string of at most 100 characters");
      const entry = await log(telemetry).setFeedback(id, { score, comment: (comment as string | undefined) ?? null, label: (label as string | undefined) ?? null });
      if (!entry) throw new SmmfError("not_found", `no request '${id}' in the request log`, { param: "id" });
      // Only answered requests name a model that exists: others count as "unknown" (labels stay bounded).
      telemetry.metrics.feedback.inc({ model: entry.status === 200 ? entry.model : "unknown", sentiment: score > 0 ? "positive" : score < 0 ? "negative" : "neutral" });
      sendJson(res, 200, entry);
      return true;
    }
    return false;
  };
}
