import { resolve } from "node:path";
import type { SmmfConfig } from "../config/SmmfConfig.js";
import type { Logger } from "./createLogger.js";
import { Metrics } from "./Metrics.js";
import { disabledTelemetry, type Telemetry } from "./Telemetry.js";
import { TelemetryThread } from "./TelemetryThread.js";
import { Tracing } from "./Tracing.js";

/**
 * The telemetry a component runs with, from the settings: metrics always; traces when an OTLP endpoint is
 * set; the request log (gateways only) unless it is off. `observability: "off"` turns all per-request work off.
 * Span export and the request log run on a telemetry thread of their own.
 */
export async function createTelemetry(config: SmmfConfig, serviceName: string, logger: Logger, options: { requestLog?: boolean } = {}): Promise<Telemetry> {
  const metrics = new Metrics();
  if (config.observability === "off") return disabledTelemetry(metrics);
  const otlpEndpoint = config.otlpEndpoint || undefined;
  const requestLog = options.requestLog && config.requestLog === "on" ? { path: resolve(config.dataDir, "requests.db"), retentionDays: config.requestLogRetentionDays, maxRows: config.requestLogMaxRows } : undefined;
  const thread = otlpEndpoint || requestLog ? await TelemetryThread.start({ serviceName, otlpEndpoint, requestLog }, logger, (n) => metrics.requestLogDropped.inc(n)) : undefined;
  return {
    enabled: true,
    metrics,
    tracing: new Tracing({ serviceName, sink: otlpEndpoint ? thread?.spanSink() : undefined }),
    requestLog: requestLog ? thread?.requestLog() : undefined,
    capture: config.requestLogCapture,
    thread,
  };
}
