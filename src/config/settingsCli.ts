// The command line of `smmf serve|worker|gateway|controller`, made from SETTINGS: parseArgs options and the
// settings part of --help.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { COMMANDS, SECTIONS, SETTINGS, fileKeyOf, type Command, type ConfigFlags, type Section, type Setting } from "./settings.js";

const ROWS: readonly Setting[] = SETTINGS;
type Options = NonNullable<ParseArgsConfig["options"]>;

/** parseArgs options: one per row with a flag. */
export const SETTINGS_FLAG_OPTIONS: Options = Object.fromEntries(
  ROWS.filter((row) => row.flag !== null).map((row) => [
    row.flag,
    row.parse.arg === "switch" ? { type: "boolean" } : row.parse.arg === "strings" ? { type: "string", multiple: true } : { type: "string" },
  ]),
);

/** The flags of a settings command (and --help / -h). Throws parseArgs' error for an unknown flag or a missing value. */
export function parseSettingsArgs(args: string[]): { flags: ConfigFlags; help: boolean } {
  const { values } = parseArgs({ args, options: { ...SETTINGS_FLAG_OPTIONS, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: false });
  const { help, ...flags } = values;
  return { flags: flags as ConfigFlags, help: help === true };
}

/** Markdown to plain text: backticks dropped. */
export function plain(text: string): string {
  return text.replace(/`/g, "");
}

/** A row's default as the README and --help show it (markdown), or "" when it has none worth showing. */
export function defaultOf(row: Setting): string {
  if (row.defaultText !== undefined) return row.defaultText;
  const value = row.default;
  if (value === undefined || value === "" || (Array.isArray(value) && value.length === 0)) return "";
  if (typeof value === "object" && value !== null && !Array.isArray(value) && Object.keys(value).length === 0) return "";
  if (typeof value === "boolean") return `\`${value ? "on" : "off"}\``;
  return `\`${Array.isArray(value) ? value.join(",") : String(value)}\``;
}

/** The value a flag takes in --help. */
export function metavarOf(row: Setting): string {
  if (row.metavar !== undefined) return row.metavar;
  switch (row.parse.kind) {
    case "integer":
      return "N";
    case "enum":
      return row.parse.values.join("|");
    case "on/off":
      return "on|off";
    case "path":
      return "FILE";
    case "map":
      return "KEY=VALUE";
    case "custom":
      return row.parse.arg === "switch" ? "" : "VALUE";
    default:
      return "VALUE";
  }
}

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function envHelp(row: Setting): string {
  if (row.env.length === 0) return "";
  const names = row.env.join(" or ");
  if (row.parse.arg === "switch") return `env ${names}=1`;
  if (row.parse.arg === "strings") return `env ${names}, comma-separated`;
  return `env ${names}`;
}

const COLUMN = 30;
const WIDTH = 110;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** One row's --help entry. */
export function helpEntry(row: Setting): string {
  const left = row.flag !== null ? `  --${row.flag}${metavarOf(row) ? ` ${metavarOf(row)}` : ""}` : `  ${fileKeyOf(row)} (config file)`;
  const notes: string[] = [];
  if (row.flag !== null && row.parse.arg === "strings") notes.push("repeatable");
  const def = plain(defaultOf(row));
  if (def) notes.push(`default ${def}`);
  const env = envHelp(row);
  if (env) notes.push(env);
  const fileKey = fileKeyOf(row);
  if (row.flag !== null && fileKey !== null && fileKey !== camel(row.flag)) notes.push(`file key ${fileKey}`);
  const text = plain(row.help) + (notes.length ? ` (${notes.join("; ")})` : "");
  const lines = wrap(text, WIDTH - COLUMN);
  const pad = " ".repeat(COLUMN);
  if (left.length + 1 > COLUMN) return [left, ...lines.map((l) => pad + l)].join("\n");
  return [left.padEnd(COLUMN) + lines[0], ...lines.slice(1).map((l) => pad + l)].join("\n");
}

export const SETTINGS_HELP_INTRO = wrap(
  "Each flag can also be set by an environment variable (env) or in the config file, under the flag's name in camelCase " +
    "(maxBodyBytes for --max-body-bytes) unless another key is shown. Flags win over the environment, which wins over the file.",
  WIDTH,
).join("\n");

/** The settings part of --help: every section (or the sections of one command), each with its rows. */
export function settingsHelp(command?: Command): string {
  const sections = (Object.keys(SECTIONS) as Section[]).filter((s) => command === undefined || SECTIONS[s].commands.includes(command));
  const parts = [SETTINGS_HELP_INTRO];
  for (const section of sections) {
    const rows = ROWS.filter((row) => row.section === section);
    const title = command === undefined ? SECTIONS[section].title : SECTIONS[section].title.replace(/ \(and serve\)$/, "");
    parts.push(`${title}:\n${rows.map(helpEntry).join("\n")}`);
  }
  return `${parts.join("\n\n")}\n`;
}

export { COMMANDS };
