import { CATEGORY_NAMES, makeCase, type FuzzCase } from "./cases.js";
import { closeAgent, FAIL_CLASSES, isFailure, OK_CLASSES, sendWithDeadline, type Outcome, type OutcomeClass, type Target } from "./send.js";
import { collectGarbage } from "./inspector.js";
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
  /** Only these case indices (a replay of cases a run reported). */
  indices?: readonly number[];
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
  /** The slowest cases (over 1 s). */
  slowest: { index: number; label: string; ms: number }[];
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`, "m").exec(text);
  if (!m) throw new Error(`${name} is not on /metrics`);
  return Number(m[1]);
}

const rss = (url: string) => metric(url, "process_resident_memory_bytes");

/** RSS after a full GC (so garbage V8 has not collected yet does not count), read from /metrics. */
async function rssAfterGc(server: FuzzServer): Promise<number> {
  await collectGarbage(server.inspectorUrl);
  await sleep(200);
  return rss(server.url);
}

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

/** `count` cases of `seed`, then more of it until every category has had at least 3 (none when count is 0). */
function warmupCases(seed: number, count: number): FuzzCase[] {
  if (count <= 0) return [];
  const cases = Array.from({ length: count }, (_, i) => makeCase(seed, i));
  const seen = new Map<string, number>();
  for (const c of cases) seen.set(c.category, (seen.get(c.category) ?? 0) + 1);
  for (let i = count; i < count + 100_000 && CATEGORY_NAMES.some((name) => (seen.get(name) ?? 0) < 3); i++) {
    const c = makeCase(seed, i);
    if ((seen.get(c.category) ?? 0) < 3) {
      cases.push(c);
      seen.set(c.category, (seen.get(c.category) ?? 0) + 1);
    }
  }
  return cases;
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
  const slowest: { index: number; label: string; ms: number }[] = [];
  const record = (c: { index: number; category: string; label: string }, o: Outcome, ms = 0) => {
    msByCategory[c.category] = (msByCategory[c.category] ?? 0) + ms;
    if (ms > 1000) {
      slowest.push({ index: c.index, label: c.label.slice(0, 160), ms });
      slowest.sort((a, b) => b.ms - a.ms).splice(8);
    }
    byClass[o.class] = (byClass[o.class] ?? 0) + 1;
    const cat = (byCategory[c.category] ??= {});
    cat[o.class] = (cat[o.class] ?? 0) + 1;
    if (isFailure(o.class)) {
      failures.push({ index: c.index, category: c.category, label: c.label, outcome: o });
      log(`FAIL #${c.index} [${c.category}] ${c.label}: ${o.class} ${o.detail}`);
    }
  };

  const count = options.indices?.length ?? options.count;
  log(`starting smmf serve (seed ${options.seed}, ${count} cases)`);
  const server = await startFuzzServer();
  const target: Target = { port: server.port, url: server.url, keys: server.keys, requestIds: [], timeoutMs: 20_000 };
  let rssBaseline = 0;
  let rssEnd = 0;
  try {
    // Warm-up: cases of another seed, not counted, so the baseline holds what the run's traffic allocates —
    // with at least a few of every category, the rare large ones (12 MB bodies) included.
    const warmup = warmupCases((options.seed ^ 0x5f5f5f5f) >>> 0, warmupCount);
    for (let from = 0; from < warmup.length; from += batchSize) await runBatch(target, warmup.slice(from, from + batchSize), concurrency, () => undefined);
    await cleanUp(server);
    const warm = await healthy(server);
    if (warm) throw new Error(`the server is not healthy after the warm-up: ${warm}`);
    rssBaseline = await rssAfterGc(server);
    log(`warm-up done (${warmup.length} cases), RSS ${(rssBaseline / 2 ** 20).toFixed(1)} MiB`);

    // A replay (indices) sends only those cases; otherwise cases 0 to count - 1.
    const indices = options.indices ?? Array.from({ length: options.count }, (_, i) => i);
    for (let from = 0; from < indices.length; from += batchSize) {
      const cases = indices.slice(from, from + batchSize).map((i) => makeCase(options.seed, i)).filter((c) => !options.only || options.only.includes(c.category));
      await runBatch(target, cases, concurrency, record);
      if (server.exited()) {
        record({ index: from, category: "server", label: `batch from #${from}` }, { class: "crash", detail: server.exited()! });
        break;
      }
      await cleanUp(server).catch(() => undefined);
      const problem = await healthy(server);
      if (problem) record({ index: from, category: "server", label: `health check after the batch from #${from}` }, { class: problem.includes("exited") ? "crash" : "health", detail: problem });
      const memory = server.exited() ? "" : await memoryLine(server.url).catch((err: unknown) => String(err));
      log(`${Math.min(from + batchSize, indices.length)}/${indices.length} cases, ${failures.length} failures, ${((Date.now() - started) / 1000).toFixed(0)} s, ${memory}`);
      if (server.exited()) break;
    }

    if (!server.exited()) {
      // RSS must come back within the tolerance of the baseline (allow a few seconds for it to settle).
      // After a full GC; glibc may hand freed pages back a little later, so a few tries.
      for (let i = 0; i < 5; i++) {
        rssEnd = await rssAfterGc(server);
        if (rssEnd <= rssBaseline * (1 + tolerance)) break;
        await sleep(1000);
      }
      if (rssEnd > rssBaseline * (1 + tolerance)) {
        record({ index: count, category: "server", label: "RSS after the run" }, { class: "rss", detail: `${(rssEnd / 2 ** 20).toFixed(1)} MiB, ${((rssEnd / rssBaseline - 1) * 100).toFixed(1)}% over the post-warm-up ${(rssBaseline / 2 ** 20).toFixed(1)} MiB` });
      }
    }
  } finally {
    closeAgent();
    await server.stop();
  }
  const serverErrors = [...new Set(server.smmf.stderr().split("\n").filter((l) => /"level":"error"|request failed|uncaught|unhandled/i.test(l)).map((l) => l.slice(0, 600)))].slice(0, 50);
  return {
    seed: options.seed,
    count,
    byClass,
    byCategory,
    failures,
    rss: { baseline: rssBaseline, end: rssEnd, ratio: rssBaseline ? rssEnd / rssBaseline : 0 },
    seconds: (Date.now() - started) / 1000,
    serverErrors,
    msByCategory,
    slowest,
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
  if (report.slowest.length > 0) lines.push(`slowest cases: ${report.slowest.map((c) => `#${c.index} ${(c.ms / 1000).toFixed(1)} s (${c.label})`).join("; ")}`);
  lines.push(`RSS: post-warm-up ${(report.rss.baseline / 2 ** 20).toFixed(1)} MiB, end ${(report.rss.end / 2 ** 20).toFixed(1)} MiB (${((report.rss.ratio - 1) * 100).toFixed(1)}%)`);
  if (report.failures.length > 0) {
    lines.push(`${report.failures.length} failures:`);
    // Grouped by what went wrong (class, category, the answer with its numbers left out), with one case to replay.
    const groups = new Map<string, Failure[]>();
    for (const f of report.failures) {
      const key = `${f.outcome.class} | ${f.category} | ${f.outcome.detail.replace(/\b\d+\b/g, "N").slice(0, 120)}`;
      groups.set(key, [...(groups.get(key) ?? []), f]);
    }
    for (const [key, fs] of [...groups].sort((a, b) => b[1].length - a[1].length)) {
      lines.push(`  ${String(fs.length).padStart(4)}× ${key}`);
      lines.push(`         e.g. #${fs[0].index}: ${fs[0].label.slice(0, 200)} (replay: npm run fuzz -- --seed ${report.seed} --cases ${fs[0].index})`);
    }
  }
  if (report.serverErrors.length > 0) {
    lines.push("server errors logged:");
    for (const e of report.serverErrors) lines.push(`  ${e}`);
  }
  return lines.join("\n");
}
