// The README's configuration table, made from SETTINGS (`npm run docs:settings` writes it).
import { SETTINGS, fileKeyOf, type Setting } from "./settings.js";
import { defaultOf, metavarOf } from "./settingsCli.js";

export const README_BEGIN = "<!-- settings:begin -->";
export const README_END = "<!-- settings:end -->";
export const DOCS_COMMAND = "npm run docs:settings";

const cell = (text: string) => text.replace(/\|/g, "\\|");
const code = (text: string) => `\`${text}\``;

function envCell(row: Setting): string {
  if (row.readmeEnv !== undefined) return row.readmeEnv;
  if (row.env.length === 0) return "";
  const names = row.env.map(code).join(", ");
  if (row.parse.arg === "switch") return row.env.map((n) => code(`${n}=1`)).join(", ");
  if (row.parse.kind === "list") return `${names} (${code("a,b")})`;
  if (row.parse.arg === "strings") return `${names} (${code(`${metavarOf(row).toLowerCase()},…`)})`;
  return names;
}

function flagCell(row: Setting): string {
  if (row.flag === null) return "";
  if (row.parse.arg === "strings") return `${code(`--${row.flag} ${metavarOf(row)}`)} (repeatable)`;
  return code(`--${row.flag}`);
}

function fileCell(row: Setting): string {
  if (row.readmeFile !== undefined) return row.readmeFile;
  const key = fileKeyOf(row);
  return key === null ? "" : code(key);
}

function meaningCell(row: Setting): string {
  // Sentence case, but etcd keeps its name.
  const text = row.help.startsWith("etcd") ? row.help : row.help.charAt(0).toUpperCase() + row.help.slice(1);
  return row.readmeMore ? `${text} ${row.readmeMore}` : text;
}

/** The table, one line per row that goes in the README. */
export function settingsTable(): string {
  const lines = ["| Config file key | Environment | Flag | Default | Meaning |", "| --- | --- | --- | --- | --- |"];
  for (const row of SETTINGS as readonly Setting[]) {
    if (row.readme === false) continue;
    lines.push(`| ${[fileCell(row), envCell(row), flagCell(row), defaultOf(row), meaningCell(row)].map(cell).join(" | ")} |`.replace(/ {2,}\|/g, " |"));
  }
  return `${lines.join("\n")}\n`;
}

function markers(readme: string): { start: number; end: number } {
  const begin = readme.indexOf(README_BEGIN);
  const end = readme.indexOf(README_END);
  if (begin < 0 || end < begin) throw new Error(`README.md has no ${README_BEGIN} ... ${README_END} markers`);
  return { start: begin + README_BEGIN.length, end };
}

/** What goes between the markers: the table, with a blank line on each side. */
export function settingsRegion(): string {
  return `\n\n${settingsTable()}\n`;
}

/** What the README holds between the markers. */
export function readmeSettingsRegion(readme: string): string {
  const { start, end } = markers(readme);
  return readme.slice(start, end);
}

/** The README with the generated table between the markers. */
export function withSettingsTable(readme: string): string {
  const { start, end } = markers(readme);
  return readme.slice(0, start) + settingsRegion() + readme.slice(end);
}
