import { parseArgs, type ParseArgsConfig } from "node:util";
import { EXIT, setApiKey } from "./adminClient.js";

type Options = NonNullable<ParseArgsConfig["options"]>;
const HELP = { help: { type: "boolean", short: "h" }, "api-key": { type: "string" } } as const;
type WithHelp<T extends Options> = T & typeof HELP;
export type ParsedCommand<T extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: WithHelp<T>; allowPositionals: true; strict: true }>>;

/**
 * A subcommand's flags and positionals, with `--help`/`-h` added. Bad flags print the error and the usage
 * (exit code 2); `--help` prints the usage (exit code 0): then the exit code is returned instead.
 */
export function parseCommandArgs<T extends Options>(command: string, usage: string, args: string[], options: T): ParsedCommand<T> | number {
  let parsed: ParsedCommand<T>;
  try {
    parsed = parseArgs({ args, options: { ...options, ...HELP } as WithHelp<T>, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`smmf ${command}: ${(err as Error).message}\n\n${usage}`);
    return EXIT.usage;
  }
  setApiKey((parsed.values as { "api-key"?: string })["api-key"]);
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(usage);
    return EXIT.ok;
  }
  return parsed;
}
