#!/usr/bin/env node
// The smmf command: runs the TypeScript sources through tsx's loader.
//
// CommonJS (bin/package.json), so that this runs before anything uses libuv's thread pool: in the roles that
// host llama.cpp (serve, worker), the pool gets one thread unless UV_THREADPOOL_SIZE says otherwise.
// node-llama-cpp runs every decode and every sequence's sampling as its own pool job; with the default four
// threads those jobs run at once on a small machine and slow each other down (measured on 2 cores, 8 streams:
// +13–28% tokens/s through `smmf serve` on stories260K with one thread; see README, Benchmark). One thread
// runs them one after the other, as llama.cpp's own server does. The pool also serves fs, dns.lookup and
// zlib jobs, which then wait behind a decode step.
"use strict";
const role = process.argv[2];
if (process.env.UV_THREADPOOL_SIZE === undefined && (role === "serve" || role === "worker")) process.env.UV_THREADPOOL_SIZE = "1";

(async () => {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
