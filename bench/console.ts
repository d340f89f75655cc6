// `npm run bench:console` (also part of `npm run bench`): the web console's first load, in Debian's Chromium
// (playwright-core) against `smmf serve` with the test model on loopback. Each of 10 loads is in a fresh browser
// context (nothing cached): the time from navigation to the overview listing the model as ready (the page's
// own API calls done and drawn), the page's load event, and the bytes transferred. Target: under 1 s and
// 300 KB compressed.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { chromium } from "playwright-core";
import { startServe } from "./startServe.js";
import { testModelPath } from "../test/helpers/testModel.js";
import { checkTarget } from "./targets.js";

const CHROMIUM = "/usr/bin/chromium";
const LOADS = 10;

export async function benchConsole(): Promise<void> {
  if (!existsSync(CHROMIUM)) throw new Error(`bench:console needs Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  const dir = mkdtempSync(join(tmpdir(), "smmf-bench-console-"));
  const serve = await startServe("console", ["--model", `stories260K=${testModelPath()}`, "--source-dir", dirname(testModelPath()), "--gpu", "off", "--threads", "1", "--data-dir", join(dir, "data"), "--log-level", "warn"]);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
  try {
    const ready: number[] = [];
    const loaded: number[] = [];
    const bytes: number[] = [];
    for (let i = 0; i < LOADS + 1; i++) {
      const context = await browser.newContext();
      const page = await context.newPage();
      let transferred = 0;
      page.on("response", (res) => void res.request().sizes().then((s) => (transferred += s.responseBodySize + s.responseHeadersSize)).catch(() => undefined));
      const started = performance.now();
      await page.goto(`http://127.0.0.1:${serve.port}/ui/`);
      await page.locator('tr[data-model="stories260K"] [data-field="status"]', { hasText: "Ready" }).waitFor();
      const took = performance.now() - started;
      const load = (await page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")) as number;
      await context.close();
      if (i === 0) continue; // the first warms the server and the browser
      ready.push(took);
      loaded.push(load);
      bytes.push(transferred);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const max = (xs: number[]) => Math.max(...xs);
    console.log(`\n== Web console first load (${LOADS} loads, each in a fresh browser context, loopback)`);
    console.log(`until the overview shows the model ready: median ${median(ready).toFixed(0)} ms, max ${max(ready).toFixed(0)} ms (target < 1,000 ms)`);
    console.log(`the page's load event: median ${median(loaded).toFixed(0)} ms, max ${max(loaded).toFixed(0)} ms`);
    console.log(`transferred (compressed, headers included, the API's answers too): median ${(median(bytes) / 1024).toFixed(1)} KB (target < 300 KB)`);
    checkTarget("console first load < 1 s", median(ready) < 1000, `median ${median(ready).toFixed(0)} ms`);
    checkTarget("console first load < 300 KB", median(bytes) < 300 * 1024, `${(median(bytes) / 1024).toFixed(1)} KB`);
  } finally {
    await browser.close();
    serve.child.kill("SIGTERM");
    await new Promise((r) => serve.child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
}
