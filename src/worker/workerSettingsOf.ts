import { resolve } from "node:path";
import type { SmmfConfig } from "../config/SmmfConfig.js";
import type { WorkerServerOptions } from "./startWorker.js";

/** The worker settings of a configuration (`smmf worker` and `smmf serve` alike). */
export function workerSettingsOf(config: SmmfConfig): Omit<WorkerServerOptions, "logger" | "registry" | "telemetry"> {
  return {
    host: config.workerHost,
    port: config.workerPort,
    streamIntervalMs: config.streamIntervalMs,
    labels: config.labels,
    maxMemoryBytes: config.maxMemoryMb * 1024 * 1024,
    modelDir: config.modelDir,
    downloadDir: resolve(config.dataDir, "model-cache"),
    drainGraceMs: config.shutdownGraceMs,
    engineDefaults: { threads: config.threads || undefined, gpu: config.gpu === "off" ? false : "auto" },
  };
}
