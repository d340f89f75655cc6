import type { ErrorCode } from "../errors/errorTable.js";
import type { RequestEntry } from "./RequestLog.js";
import type { SpanRecord } from "./spanRecord.js";

/** What the telemetry thread is started with (its workerData). */
export interface TelemetryThreadSettings {
  serviceName: string;
  /** OTLP/HTTP endpoint of a collector: spans go to `<endpoint>/v1/traces`. */
  otlpEndpoint?: string;
  requestLog?: { path: string; retentionDays: number; maxRows: number };
}

/** Request-log calls answered by the thread. */
export type RequestLogMethod = "get" | "query" | "setFeedback";

/** Spans and entries, each JSON-encoded as it comes (strings cross threads at the cost of a copy). */
export type Item = { span: SpanRecord } | { entry: RequestEntry };

export type ToThread =
  | { type: "items"; items: string[] }
  | { type: "call"; id: number; method: RequestLogMethod; args: unknown[] }
  | { type: "close" };

export type FromThread =
  | { type: "reply"; id: number; result?: unknown; error?: { code: ErrorCode; message: string; param: string | null } }
  | { type: "dropped"; count: number }
  | { type: "warn"; message: string }
  | { type: "closed" };
