import { makeCase, type FuzzCase } from "./cases.js";
import { closeAgent, FAIL_CLASSES, isFailure, OK_CLASSES, sendWithDeadline, type Outcome, type OutcomeClass, type Target } from "./send.js";
import { startFuzzServer, type FuzzServer } from "./server.js";

/**
 * The fuzz run: starts `smmf serve`, warms it up, sends `count` cases in batches (a few at a time), checks
 * after each batch that a valid chat completion still succeeds, and at the end that the server's RSS is back
 * within 10% of its post-warmup value.
 */

export interface FuzzOptions {
  seed: number;
  count: number;
  /** Cases per batch (a health check after each). */
  batchSize?: number;
  /** Cases in flight at once. */
  concurrency?: number;
  /** Cases of another seed sent before the RSS baseline is taken. */
  warmup?: number;
  /** RSS may end at most this much above its post-warmup value (0.1 = 10%). */
  rssTolerance?: number;
  log?: (line: string) => void;
  /** Only cases of these categories (the others of the run are skipped, not counted). */
  only?: readonly string[];
}

export interface Failure {
  index: number;
  category: string;
  label: string;
  outcome: Outcome;
}

export interface FuzzReport {
  seed: number;
  count: number;
  byClass: Record<string, number>;
  byCategory: Record<string, Record<string, number>>;
  failures: Failure[];
  rss: { baseline: number; end: number; ratio: number };
  seconds: number;
  /** Errors the server logged ("request failed" lines), distinct. */
  serverErrors: string[];
  /** Time spent in the cases of each category (summed over concurrent cases), in ms. */
  msByCategory: Record<string, number>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`, "m").exec(text);
  if (!m) throw new Error(`${name} is not on /metrics`);
  return Number(m[1]);
}

const rss = (url: string) => metric(url, "process_resident_memory_bytes");

async function memoryLine(url: string): Promise<string> {
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  const [r, heap, external] = await Promise.all([rss(url), metric(url, "nodejs_heap_size_used_bytes"), metric(url, "nodejs_external_memory_bytes")]);
  return `RSS ${mib(r)} MiB (heap ${mib(heap)}, external ${mib(external)})`;
}

/** A valid chat completion (1 or 2 tokens) must succeed. */
async function healthy(server: FuzzServer): Promise<string | undefined> {
  if (server.exited()) return `the server ${server.exited()}`;
  try {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${server.keys.admin}` },
      body: JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 2 }),
      signal: AbortSignal.timeout(30_000),
    });
    const body = (await res.json()) as { choices?: { message?: { content?: unknown } }[] };
    if (res.status !== 200 || typeof body.choices?.[0]?.message?.content !== "string") return `chat completion answered ${res.status}: ${JSON.stringify(body).slice(0, 300)}`;
    return undefined;
  } catch (err) {
    return `chat completion failed: ${(err as Error).message}`;
  }
}

/** Removes what admin-keyed cases may have added to the desired state (models other than the test model). */
async function cleanUp(server: FuzzServer): Promise<void> {
  const auth = { authorization: `Bearer ${server.keys.admin}` };
  const res = await fetch(`${server.url}/api/v1/models`, { headers: auth });
  if (res.status !== 200) return;
  const { data } = (await res.json()) as { data: { name: string; managed?: boolean }[] };
  for (const m of data) {
    if (m.name !== "stories260K" && m.managed) await fetch(`${server.url}/api/v1/models/${encodeURIComponent(m.name)}`, { method: "DELETE", headers: auth }).catch(() => undefined);
  }
}

async function runBatch(target: Target, cases: FuzzCase[], concurrency: number, onOutcome: (c: FuzzCase, o: Outcome, ms: number) => void): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < cases.length) {
      const c = cases[next++];
      const t0 = performance.now();
      const outcome = await sendWithDeadline(target, c);
      onOutcome(c, outcome, performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const log = options.log ?? (() => undefined);
  const batchSize = options.batchSize ?? 250;
  const concurrency = options.concurrency ?? 8;
  const warmupCount = options.warmup ?? 300;
  const tolerance = options.rssTolerance ?? 0.1;
  const started = Date.now();
  const byClass: Record<string, number> = Object.fromEntries([...OK_CLASSES, ...FAIL_CLASSES].map((c) => [c, 0]));
  const byCategory: Record<string, Record<string, number>> = {};
  const failures: Failure[] = [];
  const msByCategory: Record<string, number> = {};
  const record = (c: { index: number; category: string; label: string }, o: Outcome, ms = 0) => {
    msByCategory[c.category] = (msByCategory[c.category] ?? 0) + ms;
    byClass[o.class] = (byClass[o.class] ?? 0) + 1;
    const cat = (byCategory[c.category] ??= {});
    cat[o.class] = (cat[o.class] ?? 0) + 1;
    if (isFailure(o.class)) {
      failures.push({ index: c.index, category: c.category, label: c.label, outcome: o });
      log(`FAIL #${c.index} [${c.category}] ${c.label}: ${o.class} ${o.detail}`);
    }
  };

  log(`starting smmf serve (seed ${options.seed}, ${options.count} cases)`);
  const server = await startFuzzServer();
  const target: Target = { port: server.port, url: server.url, keys: server.keys, requestIds: [], timeoutMs: 20_000 };
  let rssBaseline = 0;
  let rssEnd = 0;
  try {
    // Warm-up: cases of another seed, not counted, so the baseline holds what normal traffic allocates.
    const warmSeed = (options.seed ^ 0x5f5f5f5f) >>> 0;
    for (let from = 0; from < warmupCount; from += batchSize) {
      const cases = Array.from({ length: Math.min(batchSize, warmupCount - from) }, (_, i) => makeCase(warmSeed, from + i));
      await runBatch(target, cases, concurrency, () => undefined);
    }
    await cleanUp(server);
    const warm = await healthy(server);
    if (warm) throw new Error(`the server is not healthy after the warm-up: ${warm}`);
    await sleep(500);
    rssBaseline = await rss(server.url);
    log(`warm-up done (${warmupCount} cases), RSS ${(rssBaseline / 2 ** 20).toFixed(1)} MiB`);

    for (let from = 0; from < options.count; from += batchSize) {
      const cases = Array.from({ length: Math.min(batchSize, options.count - from) }, (_, i) => makeCase(options.seed, from + i)).filter((c) => !options.only || options.only.includes(c.category));
      await runBatch(target, cases, concurrency, record);
      if (server.exited()) {
        record({ index: from, category: "server", label: `batch from #${from}` }, { class: "crash", detail: server.exited()! });
        break;
      }
      await cleanUp(server).catch(() => undefined);
      const problem = await healthy(server);
      if (problem) record({ index: from, category: "server", label: `health check after the batch from #${from}` }, { class: problem.includes("exited") ? "crash" : "health", detail: problem });
      const memory = server.exited() ? "" : await memoryLine(server.url).catch((err: unknown) => String(err));
      log(`${Math.min(from + batchSize, options.count)}/${options.count} cases, ${failures.length} failures, ${((Date.now() - started) / 1000).toFixed(0)} s, ${memory}`);
      if (server.exited()) break;
    }

    if (!server.exited()) {
      // RSS must come back within the tolerance of the baseline (allow a few seconds for it to settle).
      // Idle, V8's memory reducer collects and shrinks the heap within seconds; wait up to 30 s for it.
      for (let i = 0; i < 30; i++) {
        rssEnd = await rss(server.url);
        log(`RSS ${(rssEnd / 2 ** 20).toFixed(1)} MiB`);
        if (rssEnd <= rssBaseline * (1 + tolerance)) break;
        await sleep(1000);
      }
      if (rssEnd > rssBaseline * (1 + tolerance)) {
        record({ index: options.count, category: "server", label: "RSS after the run" }, { class: "rss", detail: `${(rssEnd / 2 ** 20).toFixed(1)} MiB, ${((rssEnd / rssBaseline - 1) * 100).toFixed(1)}% over the post-warm-up ${(rssBaseline / 2 ** 20).toFixed(1)} MiB` });
      }
    }
  } finally {
    closeAgent();
    await server.stop();
  }
  const serverErrors = [...new Set(server.smmf.stderr().split("\n").filter((l) => /"level":"error"|request failed|uncaught|unhandled/i.test(l)).map((l) => l.slice(0, 600)))].slice(0, 50);
  return {
    seed: options.seed,
    count: options.count,
    byClass,
    byCategory,
    failures,
    rss: { baseline: rssBaseline, end: rssEnd, ratio: rssBaseline ? rssEnd / rssBaseline : 0 },
    seconds: (Date.now() - started) / 1000,
    serverErrors,
    msByCategory,
  };
}

/** The report as text: counts per class, per category, then failures (grouped by class and case label). */
export function formatReport(report: FuzzReport): string {
  const lines: string[] = [];
  lines.push(`fuzz: seed ${report.seed}, ${report.count} cases in ${report.seconds.toFixed(1)} s`);
  lines.push("counts per class:");
  for (const [cls, n] of Object.entries(report.byClass)) if (n > 0 || isFailure(cls as OutcomeClass)) lines.push(`  ${isFailure(cls as OutcomeClass) ? "FAIL" : "ok  "} ${cls.padEnd(24)} ${n}`);
  lines.push("per category:");
  for (const [cat, counts] of Object.entries(report.byCategory).sort()) {
    lines.push(`  ${cat.padEnd(18)} ${Object.entries(counts).map(([c, n]) => `${c} ${n}`).join(", ")}${report.msByCategory[cat] ? ` (${(report.msByCategory[cat] / 1000).toFixed(1)} s)` : ""}`);
  }
  lines.push(`RSS: post-warm-up ${(report.rss.baseline / 2 ** 20).toFixed(1)} MiB, end ${(report.rss.end / 2 ** 20).toFixed(1)} MiB (${((report.rss.ratio - 1) * 100).toFixed(1)}%)`);
  if (report.failures.length > 0) {
    lines.push(`${report.failures.length} failures:`);
    const groups = new Map<string, Failure[]>();
    for (const f of report.failures) {
      const key = `${f.outcome.class} | ${f.category} | ${f.label.replace(/\d+ B/, "N B").replace(/\(n=\d+\)/, "")}`;
      groups.set(key, [...(groups.get(key) ?? []), f]);
    }
    for (const [key, fs] of groups) lines.push(`  ${fs.length}× ${key} — e.g. #${fs[0].index}: ${fs[0].outcome.detail.slice(0, 300)}`);
  }
  if (report.serverErrors.length > 0) {
    lines.push("server errors logged:");
    for (const e of report.serverErrors) lines.push(`  ${e}`);
  }
  return lines.join("\n");
}
