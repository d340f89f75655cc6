import type { ErrorCode } from "../errors/errorTable.js";

/** What the telemetry thread is started with (its workerData). */
export interface TelemetryThreadSettings {
  serviceName: string;
  /** OTLP/HTTP endpoint of a collector: spans go to `<endpoint>/v1/traces`. */
  otlpEndpoint?: string;
  /** `maxBytes`: the database's largest size (0 or absent: no bound in bytes). */
  requestLog?: { path: string; retentionDays: number; maxRows: number; maxBytes?: number };
}

/** Request-log calls answered by the thread. */
export type RequestLogMethod = "get" | "query" | "setFeedback";

/** What is handed to the thread: finished spans and request-log entries. */
export type RecordKind = "span" | "entry";

/**
 * Why records were lost (`smmf_telemetry_dropped_total{reason}`): `encode`, they could not be encoded (or
 * decoded); `queue_full`, a bounded queue on the way was full; `thread_down`, the thread had died with them
 * (or was gone for good); `write`, the request log could not write them.
 */
export type DropReason = "encode" | "queue_full" | "thread_down" | "write";
export const DROP_REASONS: readonly DropReason[] = ["encode", "queue_full", "thread_down", "write"];

/**
 * Tags of what the serving thread hands over, in one buffer per send (transferred, not copied), as items
 * (telemetryItems): a span in SMMF's span encoding (spanCodec), or a request-log entry as a JSON string.
 */
export const ITEM_SPAN = 1;
export const ITEM_ENTRY = 2;

export type ToThread =
  | { type: "items"; buffer: ArrayBuffer; length: number; spans: number; entries: number }
  | { type: "call"; id: number; method: RequestLogMethod; args: unknown[] }
  | { type: "close" }
  /** A test hook: the thread throws `message`, uncaught. */
  | { type: "fail"; message: string };

export type FromThread =
  | { type: "reply"; id: number; result?: unknown; error?: { code: ErrorCode; message: string; param: string | null } }
  /** Records the thread lost; they are settled (no longer the thread's). */
  | { type: "dropped"; count: number; reason: DropReason; record: RecordKind }
  /**
   * Frames read (their bytes no longer held), spans handed to the exporter and entries written: records
   * settled. What is handed over and not yet settled when the thread dies is counted lost.
   */
  | { type: "settled"; frames: number; spans: number; entries: number }
  | { type: "warn"; message: string }
  | { type: "closed" };
