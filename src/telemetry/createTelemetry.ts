import { resolve } from "node:path";
import type { SmmfConfig } from "../config/SmmfConfig.js";
import type { Logger } from "./createLogger.js";
import { Metrics } from "./Metrics.js";
import { disabledTelemetry, type Telemetry } from "./Telemetry.js";
import { TelemetryThread, type TelemetryThreadEvents } from "./TelemetryThread.js";
import { DROP_REASONS, type RecordKind, type TelemetryThreadSettings } from "./telemetryThreadProtocol.js";
import { Tracing } from "./Tracing.js";

const MIB = 1024 * 1024;
/**
 * The telemetry thread runs only while there is telemetry: from the first span or request-log entry or read,
 * until this long without any (an idle gateway then holds ~74 MB, not ~86 MB; `npm run bench:footprint`).
 */
export const TELEMETRY_IDLE_STOP_MS = 30_000;

/** What the telemetry thread reports, counted in `metrics` (dropped entries also in `smmf_request_log_dropped_total`). */
export function telemetryThreadMetrics(metrics: Metrics): TelemetryThreadEvents {
  return {
    dropped: (count, reason, record) => {
      metrics.telemetryDropped.inc({ record, reason }, count);
      if (record === "entry") metrics.requestLogDropped.inc(count);
    },
    replaced: (count, reason, record) => metrics.telemetryReplaced.inc({ record, reason }, count),
    restarted: () => metrics.telemetryRestarts.inc(),
  };
}

/**
 * The telemetry a component runs with, from the settings: metrics always; traces when an OTLP endpoint is
 * set; the request log (gateways only) unless it is off. `observability: "off"` turns all per-request work off.
 * Span export and the request log run on a telemetry thread of their own, started when there is first
 * something to export, write or read, and stopped after TELEMETRY_IDLE_STOP_MS without.
 */
export async function createTelemetry(config: SmmfConfig, serviceName: string, logger: Logger, options: { requestLog?: boolean } = {}): Promise<Telemetry> {
  const metrics = new Metrics();
  if (config.observability === "off") return disabledTelemetry(metrics);
  const otlpEndpoint = config.otlpEndpoint || undefined;
  const requestLog: TelemetryThreadSettings["requestLog"] =
    options.requestLog && config.requestLog === "on"
      ? {
          path: resolve(config.dataDir, "requests.db"),
          retentionDays: config.requestLogRetentionDays,
          maxRows: config.requestLogMaxRows,
          maxBytes: config.requestLogMaxMb > 0 ? Math.floor(config.requestLogMaxMb * MIB) : 0,
        }
      : undefined;
  let thread: TelemetryThread | undefined;
  if (otlpEndpoint || requestLog) {
    // The series of what this process hands over start at 0: a rate over them needs no first loss.
    const records: RecordKind[] = [...(otlpEndpoint ? (["span"] as const) : []), ...(requestLog ? (["entry"] as const) : [])];
    for (const record of records) for (const reason of DROP_REASONS) if (record === "entry" || reason !== "write") metrics.telemetryDropped.inc({ record, reason }, 0);
    thread = await TelemetryThread.start({ serviceName, otlpEndpoint, requestLog }, logger, telemetryThreadMetrics(metrics), { idleStopMs: TELEMETRY_IDLE_STOP_MS });
  }
  return {
    enabled: true,
    metrics,
    tracing: await Tracing.create({ serviceName, sink: otlpEndpoint ? thread?.spanSink() : undefined }),
    requestLog: requestLog ? thread?.requestLog() : undefined,
    capture: config.requestLogCapture,
    thread,
  };
}
