import type { ErrorCode } from "../errors/errorTable.js";

/** What the telemetry thread is started with (its workerData). */
export interface TelemetryThreadSettings {
  serviceName: string;
  /** OTLP/HTTP endpoint of a collector: spans go to `<endpoint>/v1/traces`. */
  otlpEndpoint?: string;
  requestLog?: { path: string; retentionDays: number; maxRows: number };
}

/** Request-log calls answered by the thread. */
export type RequestLogMethod = "get" | "query" | "setFeedback";

/**
 * Tags of what the serving thread hands over, in one buffer per send (transferred, not copied): a span in
 * SMMF's span encoding (spanCodec), or a request-log entry as a JSON string.
 */
export const ITEM_SPAN = 1;
export const ITEM_ENTRY = 2;

export type ToThread =
  | { type: "items"; buffer: ArrayBuffer; length: number }
  | { type: "call"; id: number; method: RequestLogMethod; args: unknown[] }
  | { type: "close" };

export type FromThread =
  | { type: "reply"; id: number; result?: unknown; error?: { code: ErrorCode; message: string; param: string | null } }
  | { type: "dropped"; count: number }
  | { type: "warn"; message: string }
  | { type: "closed" };
