import type { Logger } from "./createLogger.js";

/** Set once per process (a global: a module loaded twice still installs once). */
const INSTALLED = Symbol.for("smmf.processErrorHandlers");

export interface ProcessErrorHandlerOptions {
  /** The process's role in the log lines (default: the logger's component, else "smmf"). */
  role?: string;
  /** How the process ends after an uncaught exception (default process.exit; tests replace it). */
  exit?: (code: number) => void;
}

/** What a log line says of an error (or of anything thrown): its name, message and stack. */
export function errorFields(err: unknown): Record<string, unknown> {
  if (err instanceof Error) return { error: err.message, errorName: err.name, stack: err.stack, ...("code" in err && err.code !== undefined ? { errorCode: String(err.code) } : {}) };
  let text: string;
  try {
    text = typeof err === "string" ? err : JSON.stringify(err) ?? String(err);
  } catch {
    text = Object.prototype.toString.call(err);
  }
  return { error: text };
}

/**
 * Logs `uncaughtException` and `unhandledRejection` as JSON lines with context (the error's message, name and
 * stack, the process's role and pid), once per process; every role (serve, gateway, worker, controller)
 * installs them through `untilStopped`.
 *
 * - An uncaught exception leaves the process in a state nothing vouches for: after the line is written
 *   (stderr writes are synchronous for files and pipes), the process exits with code 1 at once, without a
 *   graceful shutdown; its supervisor (systemd, Kubernetes) starts it again. Node's own default is the same
 *   exit, with a plain-text trace instead of the JSON line.
 * - An unhandled rejection is a promise nobody awaited: it is logged (level error) and the process keeps
 *   serving, since the failed operation had already been given up by whoever started it.
 */
export function installProcessErrorHandlers(logger: Logger, options: ProcessErrorHandlerOptions = {}): boolean {
  const registry = globalThis as unknown as Record<symbol, boolean | undefined>;
  if (registry[INSTALLED]) return false;
  registry[INSTALLED] = true;
  const role = options.role ?? logger.component ?? "smmf";
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let exiting = false;
  process.on("uncaughtException", (err, origin) => {
    try {
      logger.error("uncaught exception: exiting", { role, pid: process.pid, origin, ...errorFields(err) });
    } finally {
      if (!exiting) {
        exiting = true;
        exit(1);
      }
    }
  });
  process.on("unhandledRejection", (reason) => {
    try {
      logger.error("unhandled promise rejection (the process keeps running)", { role, pid: process.pid, ...errorFields(reason) });
    } catch {
      // A logger that fails has nothing better to do with this.
    }
  });
  return true;
}
