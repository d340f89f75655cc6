import { loadConfig, type ConfigFlags } from "../config/loadConfig.js";
import { startEmbedded } from "../embedded/startEmbedded.js";
import { createLogger } from "../telemetry/createLogger.js";

/** `smmf serve`: the embedded single-process mode. Resolves with the process exit code. */
export async function runServe(flags: ConfigFlags): Promise<number> {
  const config = loadConfig(flags);
  const logger = createLogger(config.logLevel, "smmf");
  const embedded = await startEmbedded(config, logger);
  process.stdout.write(`SMMF is serving ${config.models.map((m) => m.name).join(", ")} at ${embedded.gateway.url}/v1\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info("shutting down", { signal });
      embedded.close(config.shutdownGraceMs).then(
        () => resolve(0),
        (err: unknown) => {
          logger.error("shutdown failed", { error: String(err) });
          resolve(1);
        },
      );
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
