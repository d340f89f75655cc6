import type { SmmfConfig } from "../config/SmmfConfig.js";
import { startEmbedded } from "../embedded/startEmbedded.js";
import type { Logger } from "../telemetry/createLogger.js";
import { untilStopped } from "./untilStopped.js";

/** `smmf serve`: the embedded single-process mode. Resolves with the process exit code. */
export async function runServe(config: SmmfConfig, logger: Logger): Promise<number> {
  const embedded = await startEmbedded(config, logger);
  process.stdout.write(`SMMF is serving ${config.models.map((m) => m.name).join(", ")} at ${embedded.gateway.url}/v1\n`);
  return untilStopped(logger, () => embedded.close(config.shutdownGraceMs));
}
