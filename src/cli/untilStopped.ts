import type { Logger } from "../telemetry/createLogger.js";
import { installProcessErrorHandlers } from "../telemetry/installProcessErrorHandlers.js";

/** Resolves with an exit code once SIGTERM or SIGINT has arrived and `stop` has finished. */
export function untilStopped(logger: Logger, stop: (signal: string) => Promise<void>): Promise<number> {
  // Every serving role comes here: uncaught exceptions and unhandled rejections are logged with its name.
  installProcessErrorHandlers(logger);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info("shutting down", { signal });
      stop(signal).then(
        () => resolve(0),
        (err: unknown) => {
          logger.error("shutdown failed", { error: String(err) });
          resolve(1);
        },
      );
    };
    process.once("SIGTERM", () => onSignal("SIGTERM"));
    process.once("SIGINT", () => onSignal("SIGINT"));
  });
}
