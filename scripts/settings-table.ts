// Writes the README's configuration table (between <!-- settings:begin --> and <!-- settings:end -->) from
// the settings table in src/config/settings.ts. `--check`: exit 1 when the README differs, writing nothing.
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DOCS_COMMAND, withSettingsTable } from "../src/config/settingsReadme.js";

const path = resolve(fileURLToPath(import.meta.url), "../../README.md");
const readme = readFileSync(path, "utf8");
const updated = withSettingsTable(readme);
if (process.argv.includes("--check")) {
  if (updated !== readme) {
    process.stderr.write(`README.md's configuration table is stale: run '${DOCS_COMMAND}'\n`);
    process.exit(1);
  }
} else if (updated !== readme) {
  writeFileSync(path, updated);
  process.stdout.write("README.md: configuration table updated\n");
} else {
  process.stdout.write("README.md: configuration table up to date\n");
}
