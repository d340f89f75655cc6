#!/usr/bin/env node
// The smmf command: runs the compiled JavaScript in dist/ (npm run build; npm ci builds it).
//
// In a checkout whose dist/ is missing or older than a source file, it runs the TypeScript sources through
// tsx instead (a dev dependency), so that an edit takes effect without a build; the published package has
// dist/ and no src/.
//
// CommonJS (bin/package.json), so that this runs before anything uses libuv's thread pool: in the roles that
// host llama.cpp (serve, worker), the pool gets one thread unless UV_THREADPOOL_SIZE says otherwise.
// node-llama-cpp runs every decode and every sequence's sampling as its own pool job; with the default four
// threads those jobs run at once on a small machine and slow each other down (measured on 2 cores, 8 streams:
// +13–28% tokens/s through `smmf serve` on stories260K with one thread; see README, Benchmark). One thread
// runs them one after the other, as llama.cpp's own server does. The pool also serves fs, dns.lookup and
// zlib jobs, which then wait behind a decode step.
"use strict";
const { existsSync, readdirSync, statSync } = require("node:fs");
const { join } = require("node:path");
const { pathToFileURL } = require("node:url");

const role = process.argv[2];
if (process.env.UV_THREADPOOL_SIZE === undefined && (role === "serve" || role === "worker")) process.env.UV_THREADPOOL_SIZE = "1";

const root = join(__dirname, "..");
const built = join(root, "dist", ".built");
const src = join(root, "src");

/** The newest modification time of the TypeScript sources (ms), or 0 where there are none. */
function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function distIsCurrent() {
  if (!existsSync(built)) return false;
  return !existsSync(src) || newestSource(src) <= statSync(built).mtimeMs;
}

(async () => {
  if (distIsCurrent()) {
    await import(pathToFileURL(join(root, "dist", "cli", "main.js")).href);
    return;
  }
  if (!existsSync(src)) throw new Error(`smmf: ${join(root, "dist")} is missing; reinstall the package`);
  let register;
  try {
    ({ register } = await import("tsx/esm/api"));
  } catch {
    throw new Error("smmf: dist/ is missing or older than src/, and tsx (a dev dependency) is not installed: run npm run build");
  }
  register();
  await import(pathToFileURL(join(src, "cli", "main.ts")).href);
})().catch((err) => {
  console.error(err instanceof Error && err.message.startsWith("smmf: ") ? err.message : err);
  process.exit(1);
});
