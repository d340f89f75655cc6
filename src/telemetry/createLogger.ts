export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** What the lines are of (the process's role, e.g. "smmf-gateway"), when the logger says. */
  readonly component?: string;
}

/** Logs one JSON object per line on stderr. Callers never pass secrets or prompt text. */
export function createLogger(level: LogLevel = "info", component = "smmf", write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const min = ORDER[level] ?? ORDER.info;
  const log = (lvl: Exclude<LogLevel, "silent">) => (msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, component, msg, ...fields }) + "\n");
  };
  return { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error"), component };
}
