import { Metrics } from "./Metrics.js";
import type { RequestLogAccess, TelemetryThread } from "./TelemetryThread.js";
import { Tracing } from "./Tracing.js";

/** How much of prompts and outputs the request log keeps. */
export type CaptureMode = "full" | "truncated" | "off";

/** Characters of a prompt or an output kept with capture "truncated". */
export { TRUNCATED_CHARS } from "./telemetryItems.js";

/** The observability of one process: metrics, tracing and the request log, on or off together. */
export interface Telemetry {
  /** Off: nothing is recorded per request (metrics endpoints still answer, with process metrics only). */
  enabled: boolean;
  metrics: Metrics;
  tracing: Tracing;
  requestLog?: RequestLogAccess;
  capture: CaptureMode;
  /** Exports spans and keeps the request log, off the serving thread. */
  thread?: TelemetryThread;
}

/** Telemetry that records nothing per request (tests, `observability: off`). */
export function disabledTelemetry(metrics = new Metrics()): Telemetry {
  return { enabled: false, metrics, tracing: new Tracing({ serviceName: "smmf" }), capture: "off" };
}

/** Writes what the request log holds and exports the spans left, then closes both. */
export async function closeTelemetry(telemetry: Telemetry): Promise<void> {
  await telemetry.tracing.shutdown();
  await telemetry.thread?.close();
}
