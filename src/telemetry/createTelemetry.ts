import { resolve } from "node:path";
import type { SmmfConfig } from "../config/SmmfConfig.js";
import type { Logger } from "./createLogger.js";
import { Metrics } from "./Metrics.js";
import { RequestLog } from "./RequestLog.js";
import { disabledTelemetry, type Telemetry } from "./Telemetry.js";
import { loadOtlpExporter, Tracing } from "./Tracing.js";

/**
 * The telemetry a component runs with, from the settings: metrics always; traces when an OTLP endpoint is
 * set; the request log (gateways only) unless it is off. `observability: "off"` turns all per-request work off.
 */
export async function createTelemetry(config: SmmfConfig, serviceName: string, logger: Logger, options: { requestLog?: boolean } = {}): Promise<Telemetry> {
  const metrics = new Metrics();
  if (config.observability === "off") return disabledTelemetry(metrics);
  if (config.otlpEndpoint) await loadOtlpExporter();
  const tracing = new Tracing({ serviceName, otlpEndpoint: config.otlpEndpoint || undefined });
  let requestLog: RequestLog | undefined;
  if (options.requestLog && config.requestLog === "on") {
    requestLog = await RequestLog.open({
      path: resolve(config.dataDir, "requests.db"),
      retentionDays: config.requestLogRetentionDays,
      maxRows: config.requestLogMaxRows,
      logger,
      onDropped: (n) => metrics.requestLogDropped.inc(n),
    });
  }
  return { enabled: true, metrics, tracing, requestLog, capture: config.requestLogCapture };
}
