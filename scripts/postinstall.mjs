// After npm install / npm ci: applies SMMF's patch of node-llama-cpp (patches/, with patch-package) when
// node-llama-cpp is installed in this folder, then builds dist/ where this is a checkout with TypeScript
// (npm ci in the project). An install without dev dependencies, or of the published package (which holds
// dist/ and no src/), builds nothing.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
if (existsSync(join(root, "node_modules", "node-llama-cpp")) && existsSync(join(root, "patches"))) {
  const bin = createRequire(join(root, "package.json")).resolve("patch-package/index.js");
  const result = spawnSync(process.execPath, [bin], { cwd: root, stdio: "inherit" });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
const result = spawnSync(process.execPath, [join(root, "scripts", "build.mjs"), "--if-possible"], { cwd: root, stdio: "inherit" });
process.exit(result.status ?? 1);
