// The web console at /ui/, in a real browser (Debian's chromium driven by playwright-core) against `smmf serve`
// in a process of its own with the real test model; keys made with the real `smmf key` command.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import OpenAI from "openai";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startSmmf, type SmmfProcess } from "../helpers/childProcess.js";
import { runCli } from "../helpers/controlCluster.js";
import { killAll, startDistGateway, startDistWorker, waitUntilReady, type DistGateway, type DistWorker } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { startTestServer } from "../helpers/startTestServer.js";
import { projectRoot, testModelPath } from "../helpers/testModel.js";

const CHROMIUM = "/usr/bin/chromium";
/** Screenshots of each page, kept as test artifacts. */
const ARTIFACTS = join(projectRoot, ".smmf", "test-artifacts", "console");

let dir: string;
let smmf: SmmfProcess;
let url: string;
let browser: Browser;
const secrets: Record<string, string> = {};

async function createKey(name: string, role: string): Promise<void> {
  const out = await runCli(["key", "create", name, "--role", role, "--bootstrap", "--data-dir", join(dir, "data")]);
  expect(out.code, out.stderr).toBe(0);
  secrets[name] = /^smmf-k[0-9a-f]{12}-\S{43}$/m.exec(out.stdout)![0];
}

async function signIn(page: Page, key: string): Promise<void> {
  await page.goto(`${url}/ui/`);
  await page.getByLabel("API key", { exact: true }).fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Overview" }).waitFor();
}

/** A page in a fresh context; its Content-Security-Policy is bypassed so that axe-core can be injected (the policy itself is checked on the headers). */
async function newPage(): Promise<Page> {
  const context = await browser.newContext({ bypassCSP: true });
  return context.newPage();
}

/** Serious and critical accessibility violations of the page, by axe-core. */
async function accessibilityProblems(page: Page): Promise<string[]> {
  await page.addScriptTag({ content: readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8") });
  const result = await page.evaluate(async () => (globalThis as unknown as { axe: { run(): Promise<{ violations: { id: string; impact: string; help: string }[] }> } }).axe.run());
  return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.id}: ${v.help}`);
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`the console tests need Chromium at ${CHROMIUM}: apt-get install -y chromium (scripts/ensure-tools.sh does it as root)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), "smmf-console-"));
  const port = await freePort();
  smmf = await startSmmf(["serve", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--source-dir", dirname(testModelPath()), "--gpu", "off", "--threads", "1", "--data-dir", join(dir, "data"), "--log-level", "warn"], { timeoutMs: 60_000 });
  url = `http://127.0.0.1:${port}`;
  await createKey("admin", "admin");
  await createKey("ops", "reader");
  // The server picks up the new keys file by itself.
  for (const deadline = Date.now() + 10_000; (await fetch(`${url}/api/v1/models`)).status !== 401; ) {
    if (Date.now() > deadline) throw new Error("the server did not start asking for keys");
    await new Promise((r) => setTimeout(r, 100));
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await smmf?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the web console (/ui/)", () => {
  it("is small static files, served compressed, open without a key, that talk only to their own server", async () => {
    let total = 0;
    for (const path of ["/ui/", "/ui/console.js", "/ui/console.css"]) {
      const res = await fetch(`${url}${path}`, { headers: { "accept-encoding": "gzip" } });
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-security-policy")).toMatch(/default-src 'self'/);
      total += Number(res.headers.get("content-length"));
      expect(res.headers.get("content-encoding")).toBe("gzip");
    }
    expect(total).toBeLessThan(300 * 1024);
    expect((await fetch(`${url}/ui/nothing.js`)).status).toBe(404);
    // The charting library comes from the server too, and everything together is still small.
    const chart = await fetch(`${url}/ui/uPlot.iife.min.js`, { headers: { "accept-encoding": "gzip" } });
    expect(chart.status).toBe(200);
    expect(total + Number(chart.headers.get("content-length"))).toBeLessThan(300 * 1024);
    // `smmf serve` keeps its registry in memory: no etcd to reach.
    expect(await (await fetch(`${url}/api/v1/status`, { headers: { authorization: `Bearer ${secrets.ops}` } })).json()).toEqual({ etcd: "none" });
    expect((await fetch(`${url}/ui`, { redirect: "manual" })).headers.get("location")).toBe("/ui/");
  });

  it("a reader key sees the running model and its ready replicas, read-only: no admin buttons", async () => {
    const page = await newPage();
    await page.goto(`${url}/ui/`);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, "sign-in.png") });
    await signIn(page, secrets.ops);
    const row = page.locator('tr[data-model="stories260K"]');
    await row.waitFor();
    await expect.poll(() => row.locator("td").first().textContent()).toBe("1");
    expect(await page.getByRole("button", { name: /^(Stop|Scale|Restart|Edit)/ }).count()).toBe(0);
    await expect.poll(() => page.locator("#who").textContent()).toMatch(/ops \(reader\)/);
    expect(await page.locator("#workers tbody tr").count()).toBe(1);
    await page.screenshot({ path: join(ARTIFACTS, "overview-reader.png"), fullPage: true });
    expect(await accessibilityProblems(page)).toEqual([]);
    await page.close();
  });

  it("an admin key starts a model from the form, scales it, updates it, restarts it (the rolling restart shown as it goes) and stops it; each change shows in `smmf model list` or the API and, live, on the page", async () => {
    const page = await newPage();
    page.on("dialog", (dialog) => void dialog.accept());
    await signIn(page, secrets.admin);
    // A mistake first: the server's own message is shown as it is.
    await page.getByLabel("Name", { exact: true }).fill("second");
    await page.getByLabel("Source (GGUF file as the workers see it)").fill("/no/such/dir/x.gguf");
    await page.getByRole("button", { name: "Start", exact: true }).click();
    await expect.poll(() => page.locator("#status").textContent()).toMatch(/^start second: .*source/);
    await page.getByLabel("Source (GGUF file as the workers see it)").fill(testModelPath());
    await page.getByRole("button", { name: "Start", exact: true }).click();
    await expect.poll(() => page.locator("#status").textContent()).toBe("start second: done");
    const row = page.locator('tr[data-model="second"]');
    // Ready without a reload: the page follows the server.
    await expect.poll(() => row.locator("td").first().textContent(), { timeout: 30_000 }).toBe("1");
    await page.getByLabel("Replicas of second").fill("2");
    await page.getByRole("button", { name: "Scale second" }).click();
    await expect.poll(() => row.locator("td").first().textContent(), { timeout: 60_000 }).toBe("2");
    const listed = await runCli(["model", "list", "--url", url, "--api-key", secrets.admin]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/second\s.*2/);
    await page.screenshot({ path: join(ARTIFACTS, "overview-admin.png"), fullPage: true });
    expect(await accessibilityProblems(page)).toEqual([]);
    // Update from the form, filled with the model's spec: a label; the server keeps the new spec.
    await page.getByRole("button", { name: "Edit second" }).click();
    await expect.poll(() => page.getByLabel("Source (GGUF file as the workers see it)").inputValue()).toBe(testModelPath());
    expect(await page.getByLabel("Replicas", { exact: true }).inputValue()).toBe("2");
    await page.getByLabel("Labels (KEY=VALUE, comma-separated)").fill("team=web");
    await page.getByRole("button", { name: "Update", exact: true }).click();
    await expect.poll(() => page.locator("#status").textContent()).toBe("update second: done");
    const got = (await (await fetch(`${url}/api/v1/models/second`, { headers: { authorization: `Bearer ${secrets.admin}` } })).json()) as { spec: { labels: Record<string, string>; replicas: number } };
    expect(got.spec).toMatchObject({ labels: { team: "web" }, replicas: 2 });
    // A restart, confirmed, shown step by step as it goes: every status the row shows is recorded by the page.
    await expect.poll(() => row.locator('[data-field="status"]').textContent(), { timeout: 60_000 }).toBe("Ready");
    const idsOf = async () => ((await (await fetch(`${url}/api/v1/models/second`, { headers: { authorization: `Bearer ${secrets.admin}` } })).json()) as { instances: { instanceId: string }[] }).instances.map((i) => i.instanceId).sort();
    const before = await idsOf();
    await page.evaluate(`(() => {
      window.statuses = [];
      new MutationObserver(() => {
        const cell = document.querySelector('tr[data-model="second"] [data-field="status"]');
        if (cell && window.statuses.at(-1) !== cell.textContent) window.statuses.push(cell.textContent);
      }).observe(document.querySelector("#models tbody"), { childList: true, subtree: true, characterData: true });
    })()`);
    await page.getByRole("button", { name: "Restart second" }).click();
    await expect.poll(() => page.locator("#status").textContent()).toBe("restart second: done");
    await expect.poll(async () => (await idsOf()).filter((id) => before.includes(id)).length, { timeout: 60_000 }).toBe(0);
    await expect.poll(() => row.locator('[data-field="status"]').textContent(), { timeout: 60_000 }).toBe("Ready");
    expect(await row.locator('[data-field="up-to-date"]').textContent()).toBe("2 / 2");
    const statuses = (await page.evaluate("window.statuses")) as string[];
    expect(statuses, statuses.join(" | ")).toEqual(expect.arrayContaining([expect.stringMatching(/^Rolling restart: [01] of 2 replaced$/)]));
    await page.getByRole("button", { name: "Stop second" }).click();
    await expect.poll(() => row.count(), { timeout: 30_000 }).toBe(0);
    const after = await runCli(["model", "list", "--url", url, "--api-key", secrets.admin]);
    expect(after.stdout).not.toMatch(/^second\s/m);
    // Instances: an admin sets one offline and back online; the page shows each state as the server has it.
    const workers = (await (await fetch(`${url}/api/v1/workers`, { headers: { authorization: `Bearer ${secrets.admin}` } })).json()) as { data: { instances: { instanceId: string; model: string }[] }[] };
    const instance = workers.data.flatMap((w) => w.instances).find((i) => i.model === "stories260K")!.instanceId;
    await page.getByRole("link", { name: "Instances" }).click();
    const state = page.locator(`tr[data-instance="${instance}"] td`).nth(1);
    await expect.poll(() => state.textContent()).toBe("online");
    await page.getByRole("button", { name: `Set ${instance} offline` }).click();
    await expect.poll(() => state.textContent(), { timeout: 10_000 }).toBe("offline");
    await page.getByRole("button", { name: `Set ${instance} online` }).click();
    await expect.poll(() => state.textContent(), { timeout: 10_000 }).toBe("online");
    await page.close();
  });

  it("the playground streams an answer into the page token by token, and shows the request as curl", async () => {
    const page = await newPage();
    await signIn(page, secrets.ops);
    await page.getByRole("link", { name: "Playground" }).click();
    await page.getByRole("heading", { name: "Playground" }).waitFor();
    await expect.poll(() => page.getByLabel("Model", { exact: true }).locator("option").allTextContents()).toContain("stories260K");
    await page.getByLabel("Model", { exact: true }).selectOption("stories260K");
    await page.getByLabel("Max tokens").fill("400");
    await page.getByLabel("Seed").fill("7");
    await page.getByLabel("Message", { exact: true }).fill("Once upon a time");
    // Every change of the answer's text, as the page makes it.
    await page.evaluate(`(() => {
      const out = document.getElementById("chat-output");
      window.lengths = [];
      new MutationObserver(() => window.lengths.push(out.textContent.length)).observe(out, { childList: true, characterData: true, subtree: true });
    })()`);
    await page.getByRole("button", { name: "Send" }).click();
    await expect.poll(() => page.locator("#chat-status").textContent(), { timeout: 30_000 }).toBe("Done.");
    const lengths = (await page.evaluate("window.lengths")) as number[];
    // The text grew piece by piece (many updates, each longer than the one before), not in one go.
    expect(lengths.filter((n) => n > 0).length).toBeGreaterThan(5);
    expect(lengths.slice(1).every((n, i) => n >= lengths[i])).toBe(true);
    expect(await page.locator("#chat-curl").textContent()).toMatch(/^curl -N http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions .*"model":"stories260K".*"top_p":1.*"seed":7/s);
    // The sampling settings reach the model: the same seed gives the same answer again.
    const first = await page.locator("#chat-output").textContent();
    expect(first?.length).toBeGreaterThan(20);
    await page.getByRole("button", { name: "Send" }).click();
    await expect.poll(() => page.locator("#chat-status").textContent(), { timeout: 30_000 }).toBe("Done.");
    expect(await page.locator("#chat-output").textContent()).toBe(first);
    await page.screenshot({ path: join(ARTIFACTS, "playground.png"), fullPage: true });
    expect(await accessibilityProblems(page)).toEqual([]);
    await page.context().close();
  });

  it("a request made with the openai client shows in the request log page; thumbs down with a comment is stored", async () => {
    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: secrets.admin, maxRetries: 0 });
    const { response } = await openai.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "A story about a frog" }], max_tokens: 5 }).withResponse();
    const id = response.headers.get("x-request-id")!;
    const page = await newPage();
    await signIn(page, secrets.ops);
    await page.getByRole("link", { name: "Requests" }).click();
    const row = page.locator(`tr[data-request="${id}"]`);
    await expect.poll(async () => {
      await page.getByRole("button", { name: "Filter" }).click();
      return row.count();
    }, { timeout: 15_000 }).toBe(1);
    // Filtered by the API key it came with: by another key's name it is not listed.
    await page.getByLabel("Filter by API key name").fill("ops");
    await page.getByRole("button", { name: "Filter" }).click();
    await expect.poll(() => row.count()).toBe(0);
    await page.getByLabel("Filter by API key name").fill("admin");
    await page.getByRole("button", { name: "Filter" }).click();
    await expect.poll(() => row.count()).toBe(1);
    // And by time: from a minute after it, it is not listed.
    await page.getByLabel("Since").fill(new Date(Date.now() + 60_000 - new Date().getTimezoneOffset() * 60_000).toISOString().slice(0, 16));
    await page.getByRole("button", { name: "Filter" }).click();
    await expect.poll(() => row.count()).toBe(0);
    await page.getByLabel("Since").fill("");
    await page.getByRole("button", { name: "Filter" }).click();
    await expect.poll(() => row.count()).toBe(1);
    await page.getByRole("button", { name: `Details of ${id}` }).click();
    await expect.poll(() => page.locator("#detail-prompt").textContent()).toMatch(/A story about a frog/);
    expect(await page.locator("#detail-fields").textContent()).toMatch(/API keyadmin/);
    await page.getByRole("button", { name: /Bad/ }).click();
    await page.getByLabel("Comment").fill("Not about a frog at all.");
    // Counts the page's feedback posts.
    await page.evaluate(`(() => {
      const f = window.fetch;
      window.feedbackPosts = 0;
      window.fetch = (...args) => {
        if (String(args[0]).endsWith("/feedback")) window.feedbackPosts++;
        return f(...args);
      };
    })()`);
    await page.getByRole("button", { name: "Send feedback" }).click();
    await expect.poll(() => page.locator("#feedback-status").textContent()).toBe("Feedback saved.");
    // One click, one post (the page's handlers are not added again when someone signs in).
    expect(await page.evaluate("window.feedbackPosts")).toBe(1);
    const stored = (await (await fetch(`${url}/api/v1/requests/${id}`, { headers: { authorization: `Bearer ${secrets.ops}` } })).json()) as { feedback: { score: number; comment: string } };
    expect(stored.feedback).toMatchObject({ score: -1, comment: "Not about a frog at all." });
    await page.screenshot({ path: join(ARTIFACTS, "requests.png"), fullPage: true });
    expect(await accessibilityProblems(page)).toEqual([]);
    await page.context().close();
  });

  it("the overview charts this gateway's traffic live: requests, tokens, time to first token and errors of the last minutes", async () => {
    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: secrets.admin, maxRetries: 0 });
    const ask = async () => {
      let tokens = 0;
      const stream = await openai.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "Hello" }], max_tokens: 8, stream: true, stream_options: { include_usage: true } });
      for await (const chunk of stream) tokens += chunk.usage?.completion_tokens ?? 0;
      return tokens;
    };
    const traffic = async () => (await (await fetch(`${url}/api/v1/traffic?seconds=600`, { headers: { authorization: `Bearer ${secrets.ops}` } })).json()) as { recorded: boolean; requests: number[]; tokens: number[]; errors: number[]; ttftMs: (number | null)[] };
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const start = await traffic();
    let tokens = 0;
    for (let i = 0; i < 3; i++) tokens += await ask();
    // A second is counted once it is over.
    await expect.poll(async () => sum((await traffic()).requests) - sum(start.requests), { timeout: 5_000 }).toBe(3);
    const after = await traffic();
    expect(after.recorded).toBe(true);
    expect(sum(after.tokens) - sum(start.tokens)).toBe(tokens);
    expect(after.ttftMs.some((v) => v !== null && v > 0)).toBe(true);
    expect((await fetch(`${url}/api/v1/traffic?seconds=601`, { headers: { authorization: `Bearer ${secrets.ops}` } })).status).toBe(400);

    const page = await newPage();
    await signIn(page, secrets.ops);
    for (const id of ["chart-requests", "chart-tokens", "chart-ttft", "chart-errors"]) await expect.poll(() => page.locator(`#${id} canvas`).count()).toBe(1);
    const said = async () => Number(/Last minute: (\d+) requests/.exec((await page.locator("#traffic-now").textContent()) ?? "")?.[1] ?? -1);
    await expect.poll(said).toBeGreaterThanOrEqual(3);
    const shown = await said();
    // More traffic shows without a reload.
    await ask();
    await ask();
    await expect.poll(said, { timeout: 10_000 }).toBe(shown + 2);
    expect(await page.locator("#traffic-now").textContent()).toMatch(/time to first token \d+ ms/);
    await page.screenshot({ path: join(ARTIFACTS, "overview-traffic.png"), fullPage: true });
    await page.context().close();
  });

  it("is readable at a phone's width: no page wider than the screen (wide tables scroll on their own), and accessible", async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    try {
      await signIn(page, secrets.admin);
      await page.locator('tr[data-model="stories260K"]').waitFor();
      for (const hash of ["overview", "instances", "requests", "playground", "events"]) {
        await page.goto(`${url}/ui/#${hash}`);
        await page.locator(`#${hash} h2`).waitFor();
        await page.locator(`#${hash}`).waitFor();
        const [scrollWidth, innerWidth] = (await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")) as number[];
        expect(scrollWidth, hash).toBeLessThanOrEqual(innerWidth);
        await page.screenshot({ path: join(ARTIFACTS, `phone-${hash}.png`), fullPage: true });
        expect(await accessibilityProblems(page), hash).toEqual([]);
      }
    } finally {
      await context.close();
    }
  });

  it("a wrong key is refused with the server's message, and the page stays on sign-in", async () => {
    const page = await newPage();
    await page.goto(`${url}/ui/`);
    await page.getByLabel("API key", { exact: true }).fill("smmf-k000000000000-wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/Incorrect API key/);
    expect(await page.getByRole("heading", { name: "Overview" }).isVisible()).toBe(false);
    await page.close();
  });

  it("on loopback with no keys in use, there is no sign-in", async () => {
    const open = await startTestServer();
    const page = await newPage();
    try {
      await page.goto(`${open.url}/ui/`);
      await page.getByRole("heading", { name: "Overview" }).waitFor();
      await expect.poll(() => page.locator("#who").textContent()).toMatch(/no API keys/);
      await expect.poll(() => page.locator('tr[data-model="stories260K"] td').first().textContent()).toBe("1");
    } finally {
      await page.close();
      await open.close();
    }
  });
});

describe("the web console on a distributed cluster", () => {
  let etcd: TestEtcd;
  let workers: DistWorker[] = [];
  let gateway: DistGateway;
  beforeAll(async () => {
    etcd = await startEtcd();
    workers = [await startDistWorker(etcd, { leaseTtl: 2 }), await startDistWorker(etcd, { leaseTtl: 2 })];
    gateway = await startDistGateway(etcd);
    await waitUntilReady(gateway);
  }, 120_000);
  afterAll(async () => {
    await killAll(gateway, ...workers);
    await etcd?.close();
  });

  it("a worker killed with SIGKILL shows as gone on the instances page, and in the event stream, without a reload", async () => {
    const root = gateway.baseURL.replace(/\/v1$/, "");
    const page = await newPage();
    const events = await newPage();
    try {
      await page.goto(`${root}/ui/#instances`);
      await page.getByRole("heading", { name: "Instances" }).waitFor();
      for (const w of workers) await expect.poll(() => page.locator(`tr[data-instance="${w.instanceId}"]`).count(), { timeout: 15_000 }).toBe(1);
      await events.goto(`${root}/ui/#events`);
      await expect.poll(() => events.locator("#events-status").textContent()).toBe("Following events…");
      await page.screenshot({ path: join(ARTIFACTS, "instances.png"), fullPage: true });
      expect(await accessibilityProblems(page)).toEqual([]);
      await workers[0].proc.kill();
      await expect.poll(() => page.locator(`tr[data-instance="${workers[0].instanceId}"]`).count(), { timeout: 20_000 }).toBe(0);
      expect(await page.locator(`tr[data-instance="${workers[1].instanceId}"]`).count()).toBe(1);
      await expect.poll(() => events.locator("#event-list li").allTextContents(), { timeout: 20_000 }).toEqual(expect.arrayContaining([expect.stringContaining(workers[0].instanceId)]));
      await events.screenshot({ path: join(ARTIFACTS, "events.png"), fullPage: true });
      expect(await accessibilityProblems(events)).toEqual([]);
      // etcd goes down: the page says so over what it last loaded, and recovers by itself when etcd is back.
      await etcd.stop();
      await page.getByRole("link", { name: "Overview" }).click();
      await expect.poll(() => page.locator("#trouble").textContent(), { timeout: 30_000 }).toMatch(/control plane is unavailable.*etcd/i);
      await page.screenshot({ path: join(ARTIFACTS, "etcd-down.png"), fullPage: true });
      expect(await accessibilityProblems(page)).toEqual([]);
      await etcd.start();
      await expect.poll(() => page.locator("#trouble").isVisible(), { timeout: 30_000 }).toBe(false);
    } finally {
      await page.context().close();
      await events.context().close();
    }
  });
});
