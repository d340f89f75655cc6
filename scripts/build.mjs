// npm run build: compiles src/ to dist/ with tsc (tsconfig.build.json), from scratch, and stamps dist/.built
// when done (bin/smmf.js runs dist/ when that stamp is newer than every source file). `--if-possible` skips
// quietly where TypeScript is not installed (an install without dev dependencies keeps the dist/ it has).
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const ifPossible = process.argv.includes("--if-possible");
let tsc;
try {
  tsc = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc");
} catch {
  if (ifPossible) process.exit(0);
  console.error("npm run build needs TypeScript: npm ci (with dev dependencies)");
  process.exit(1);
}
if (!existsSync(join(root, "src"))) {
  if (ifPossible) process.exit(0);
  console.error("no src/ here: nothing to build");
  process.exit(1);
}
const dist = join(root, "dist");
rmSync(dist, { recursive: true, force: true });
const started = performance.now();
const result = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
if (result.status !== 0) {
  rmSync(dist, { recursive: true, force: true });
  process.exit(result.status ?? 1);
}
// The web console's static files (plain HTML, CSS and ES modules: nothing to compile).
cpSync(join(root, "src", "console"), join(dist, "console"), { recursive: true });
// uPlot, the console's charts (MIT, https://github.com/leeoniya/uPlot): its minified build and styles, with its licence.
const uplot = dirname(createRequire(join(root, "package.json")).resolve("uplot/package.json"));
for (const [from, to] of [["dist/uPlot.iife.min.js", "uPlot.iife.min.js"], ["dist/uPlot.min.css", "uPlot.min.css"], ["LICENSE", "uPlot.LICENSE.txt"]]) cpSync(join(uplot, from), join(dist, "console", to));
writeFileSync(join(dist, ".built"), `${new Date().toISOString()}\n`);
if (!process.argv.includes("--quiet")) console.error(`built dist/ in ${((performance.now() - started) / 1000).toFixed(1)} s`);
