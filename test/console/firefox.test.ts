// The web console in Firefox (Debian's firefox-esr, driven by puppeteer-core over WebDriver BiDi): the same
// pages work there as in Chromium (test/console/console.test.ts tests them in depth). Against `smmf serve` with
// the real test model, in this process, open on loopback (no keys).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { projectRoot } from "../helpers/testModel.js";

const FIREFOX = "/usr/bin/firefox-esr";
const ARTIFACTS = join(projectRoot, ".smmf", "test-artifacts", "console");

let server: TestServer;
let browser: Browser;
let profile: string;

/** Polls `read` until `ok` holds of its value (or fails after `timeoutMs`, with the last value). */
async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const text = (page: Page, selector: string) => page.$eval(selector, (el) => el.textContent ?? "").catch(() => "");

beforeAll(async () => {
  if (!existsSync(FIREFOX)) throw new Error(`the Firefox console test needs ${FIREFOX}: apt-get install -y firefox-esr (scripts/ensure-tools.sh does it as root)`);
  server = await startTestServer();
  profile = mkdtempSync(join(tmpdir(), "smmf-firefox-"));
  browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    // No network but loopback here: Firefox's own update, telemetry and safe-browsing calls stay off.
    extraPrefsFirefox: { "app.update.enabled": false, "browser.safebrowsing.malware.enabled": false, "browser.safebrowsing.phishing.enabled": false, "datareporting.policy.dataSubmissionEnabled": false, "toolkit.telemetry.enabled": false, "network.captive-portal-service.enabled": false, "extensions.update.enabled": false },
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe("the web console in Firefox", () => {
  it("shows the model ready with live charts, streams a chat in the playground, and follows events", async () => {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    await page.goto(`${server.url}/ui/`);
    expect(await until("the model row", () => text(page, 'tr[data-model="stories260K"] td'), (t) => t === "1")).toBe("1");
    expect(await text(page, "#who")).toMatch(/no API keys/);
    // uPlot draws on canvases in Firefox too.
    for (const id of ["chart-requests", "chart-tokens", "chart-ttft", "chart-errors"]) await until(`a canvas in #${id}`, () => page.$$eval(`#${id} canvas`, (c) => c.length), (n) => n === 1);
    await page.screenshot({ path: join(ARTIFACTS, "firefox-overview.png"), fullPage: true });

    await page.goto(`${server.url}/ui/#playground`);
    await until("the model in the playground", () => page.$$eval("#chat-model option", (o) => o.map((x) => x.textContent)), (names) => names.includes("stories260K"));
    await page.$eval("#chat-max-tokens", (el) => ((el as unknown as { value: string }).value = "400"));
    await page.type("#chat-message", "Once upon a time");
    await page.evaluate(`(() => {
      const out = document.getElementById("chat-output");
      window.lengths = [];
      new MutationObserver(() => window.lengths.push(out.textContent.length)).observe(out, { childList: true, characterData: true, subtree: true });
    })()`);
    await page.click("#chat-form button[type=submit]");
    await until("the answer to finish", () => text(page, "#chat-status"), (t) => t === "Done.", 30_000);
    const lengths = (await page.evaluate("window.lengths")) as number[];
    expect(lengths.filter((n) => n > 0).length).toBeGreaterThan(5);
    expect(lengths.slice(1).every((n, i) => n >= lengths[i])).toBe(true);

    await page.goto(`${server.url}/ui/#events`);
    expect(await until("the event stream", () => text(page, "#events-status"), (t) => t === "Following events…")).toBe("Following events…");
    // The request just made shows in the request log page.
    await page.goto(`${server.url}/ui/#requests`);
    expect(await until("a logged request", () => page.$$eval("#request-list tbody tr", (rows) => rows.length), (n) => n >= 1)).toBeGreaterThanOrEqual(1);
    await page.screenshot({ path: join(ARTIFACTS, "firefox-requests.png"), fullPage: true });
    await page.close();
  });
});
