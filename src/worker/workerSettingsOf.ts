import { resolve } from "node:path";
import { DEFAULTS, modelPath } from "../config/loadConfig.js";
import type { SmmfConfig } from "../config/SmmfConfig.js";
import type { WorkerServerOptions } from "./startWorker.js";
import { isFileEngine } from "../engines/proxyPresets.js";

const MIB = 1024 * 1024;

/** The worker settings of a configuration (`smmf worker` and `smmf serve` alike). */
export function workerSettingsOf(config: SmmfConfig): Omit<WorkerServerOptions, "logger" | "registry" | "telemetry"> {
  // The operator's own configured model files are allowed wherever they are (each file, not its folder).
  const configuredFiles = config.models.filter((m) => isFileEngine(m.engine ?? "") && m.file).map((m) => modelPath(config, m));
  return {
    host: config.workerHost,
    port: config.workerPort,
    streamIntervalMs: config.streamIntervalMs,
    labels: config.labels,
    maxMemoryBytes: config.maxMemoryMb * MIB,
    modelDir: config.modelDir,
    downloadDir: resolve(config.dataDir, "model-cache"),
    downloadCacheBytes: (config.downloadCacheMb ?? DEFAULTS.downloadCacheMb) * MIB,
    maxInstances: config.maxInstancesPerWorker ?? DEFAULTS.maxInstancesPerWorker,
    sourcePolicy: {
      allowedDirs: [...(config.sourceDirs ?? []), ...configuredFiles],
      allowedHosts: config.sourceHosts ?? [],
      allowPrivate: config.sourceAllowPrivate ?? false,
      maxDownloadBytes: (config.maxDownloadMb ?? DEFAULTS.maxDownloadMb!) * MIB,
      downloadTimeoutMs: config.downloadTimeoutMs ?? DEFAULTS.downloadTimeoutMs!,
    },
    drainGraceMs: config.shutdownGraceMs,
    engineDefaults: { threads: config.threads || undefined, gpu: config.gpu === "off" ? false : "auto", upstreamCredentials: config.upstreamCredentials ?? [] },
  };
}
