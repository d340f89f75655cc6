import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "./createLogger.js";
import { RequestLog, type RequestEntry } from "./RequestLog.js";

let dir: string;
const logger = createLogger("silent");

function entry(id: string, time: number, overrides: Partial<RequestEntry> = {}): RequestEntry {
  return {
    id,
    time,
    endpoint: "completions",
    model: "m",
    instance: "m-1",
    engine: "llama.cpp",
    stream: false,
    params: { max_tokens: 3 },
    prompt: "p",
    output: "o",
    status: 200,
    errorCode: null,
    errorMessage: null,
    latencyMs: 12.5,
    ttftMs: 3,
    promptTokens: 2,
    completionTokens: 3,
    retries: 0,
    traceId: null,
    ...overrides,
  };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "smmf-rl-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("RequestLog", () => {
  it("keeps entries across a reopen of the same file", async () => {
    const path = join(dir, "sub", "requests.db");
    const log = await RequestLog.open({ path, retentionDays: 7, maxRows: 100, logger });
    log.record(entry("a", Date.now()));
    log.close();
    const again = await RequestLog.open({ path, retentionDays: 7, maxRows: 100, logger });
    expect(again.get("a")).toMatchObject({ id: "a", params: { max_tokens: 3 }, stream: false, feedback: null });
    again.close();
  });

  it("deletes entries older than the retention and beyond the row limit, oldest first", async () => {
    const log = await RequestLog.open({ path: join(dir, "r.db"), retentionDays: 1, maxRows: 3, logger });
    const now = Date.now();
    log.record(entry("old", now - 2 * 86_400_000));
    for (let i = 0; i < 5; i++) log.record(entry(`new-${i}`, now - 1000 + i));
    expect(log.prune()).toBe(3);
    expect(log.query({ limit: 10 }).data.map((e) => e.id)).toEqual(["new-4", "new-3", "new-2"]);
    log.close();
  });

  it("pages newest first with a cursor, also across entries of the same millisecond", async () => {
    const log = await RequestLog.open({ path: join(dir, "p.db"), retentionDays: 7, maxRows: 100, logger });
    const t = Date.now();
    for (const id of ["a", "b", "c", "d", "e"]) log.record(entry(id, t));
    const pages: string[][] = [];
    let before: string | undefined;
    for (;;) {
      const page = log.query({ limit: 2, before });
      pages.push(page.data.map((e) => e.id));
      if (!page.next) break;
      before = page.next;
    }
    expect(pages).toEqual([["e", "d"], ["c", "b"], ["a"]]);
    log.close();
  });

  it("filters by the API key's name; requests made without a key have none", async () => {
    const log = await RequestLog.open({ path: join(dir, "keys.db"), retentionDays: 7, maxRows: 100, logger });
    log.record(entry("x", 1, { keyName: "app" }));
    log.record(entry("y", 2, { keyName: "batch" }));
    log.record(entry("z", 3));
    expect(log.query({ key: "app", limit: 10 }).data.map((e) => e.id)).toEqual(["x"]);
    expect(log.query({ key: "batch", limit: 10 }).data.map((e) => e.id)).toEqual(["y"]);
    expect(log.get("z")?.keyName).toBeNull();
    expect(log.query({ limit: 10 }).data.map((e) => e.id)).toEqual(["z", "y", "x"]);
    log.close();
  });

  it("stores feedback, and says when there is no such request", async () => {
    const log = await RequestLog.open({ path: join(dir, "f.db"), retentionDays: 7, maxRows: 100, logger });
    log.record(entry("x", Date.now()));
    expect(log.setFeedback("x", { score: -1, comment: "too short", label: null })?.feedback).toMatchObject({ score: -1, comment: "too short", label: null });
    expect(log.setFeedback("y", { score: 1, comment: null, label: null })).toBeUndefined();
    log.close();
  });

  it("a log that cannot open drops entries (counted) and answers queries with unavailable", async () => {
    let dropped = 0;
    const log = await RequestLog.open({ path: "/dev/null/x/requests.db", retentionDays: 7, maxRows: 100, logger, onDropped: (n) => (dropped += n) });
    expect(log.available).toBe(false);
    log.record(entry("a", Date.now()));
    expect(dropped).toBe(1);
    expect(() => log.query({ limit: 1 })).toThrow(expect.objectContaining({ code: "unavailable" }));
    log.close();
  });

  it("never replaces a row (feedback stays), keeps no oversized parameters, and opens a log of the first schema", async () => {
    const path = join(dir, "v1.db");
    // A log written before client_request_id existed.
    const { default: Sqlite } = await import("better-sqlite3");
    const old = new Sqlite(path);
    old.exec("CREATE TABLE requests (id TEXT PRIMARY KEY, time INTEGER NOT NULL, endpoint TEXT NOT NULL, model TEXT NOT NULL, instance TEXT, engine TEXT, stream INTEGER NOT NULL, params TEXT NOT NULL, prompt TEXT, output TEXT, status INTEGER NOT NULL, error_code TEXT, error_message TEXT, latency_ms REAL NOT NULL, ttft_ms REAL, prompt_tokens INTEGER, completion_tokens INTEGER, retries INTEGER NOT NULL, trace_id TEXT, feedback_score REAL, feedback_comment TEXT, feedback_label TEXT, feedback_time INTEGER)");
    old.close();
    const log = await RequestLog.open({ path, retentionDays: 7, maxRows: 100, logger });
    log.record(entry("a", Date.now(), { clientRequestId: "mine", keyName: "app" }));
    log.flush();
    log.setFeedback("a", { score: 1, comment: null, label: null });
    log.record(entry("a", Date.now(), { model: "other" }));
    log.record(entry("big", Date.now(), { params: { stop: "x".repeat(20_000) } }));
    log.flush();
    expect(log.get("a")).toMatchObject({ model: "m", clientRequestId: "mine", keyName: "app", feedback: { score: 1 } });
    expect(log.query({ key: "app", limit: 10 }).data.map((e) => e.id)).toEqual(["a"]);
    expect(log.get("big")?.params).toEqual({ _omitted: "parameters over 8192 characters are not kept" });
    log.close();
  });

  it("stays under its bound in bytes: the oldest rows go first, and the pages they free are used again", async () => {
    const path = join(dir, "b.db");
    const maxBytes = 1024 * 1024;
    let written = 0;
    const log = await RequestLog.open({ path, retentionDays: 7, maxRows: 1_000_000, maxBytes, logger, onWritten: (n) => (written += n) });
    const prompt = "x".repeat(8 * 1024);
    const now = Date.now();
    let fileAtBound = 0;
    // 600 entries of ~8 KiB (~5 MB) in batches of 20, five times what the bound holds.
    for (let i = 0; i < 600; i++) {
      log.record(entry(`e${String(i).padStart(4, "0")}`, now + i, { prompt }));
      if (i % 20 !== 19) continue;
      log.flush();
      const size = log.sizeBytes();
      expect(size.used).toBeLessThanOrEqual(maxBytes);
      if (i >= 200 && fileAtBound === 0) fileAtBound = size.file;
    }
    expect(written).toBe(600);
    // The file reached about the bound (plus a batch) and stopped growing: freed pages were reused.
    const { file } = log.sizeBytes();
    expect(fileAtBound).toBeGreaterThan(0.8 * maxBytes);
    expect(file).toBeLessThanOrEqual(maxBytes + 20 * 9 * 1024 + 64 * 1024);
    expect(file).toBeLessThanOrEqual(fileAtBound + 20 * 9 * 1024);
    // The newest are kept, the oldest are gone.
    const kept = log.query({ limit: 1000 }).data.map((e) => e.id);
    expect(kept[0]).toBe("e0599");
    expect(kept.length).toBeGreaterThan(60);
    expect(kept.length).toBeLessThan(130);
    expect(log.get("e0000")).toBeUndefined();
    log.close();
    expect(statSync(path).size).toBeLessThanOrEqual(file);
  });

  it("vacuums a file opened far over its bound (a lowered bound) down to it", async () => {
    const path = join(dir, "v.db");
    const big = await RequestLog.open({ path, retentionDays: 7, maxRows: 1_000_000, logger });
    for (let i = 0; i < 400; i++) big.record(entry(`v${i}`, Date.now() + i, { prompt: "y".repeat(8 * 1024) }));
    big.close();
    expect(statSync(path).size).toBeGreaterThan(3 * 1024 * 1024);
    const small = await RequestLog.open({ path, retentionDays: 7, maxRows: 1_000_000, maxBytes: 1024 * 1024, logger });
    expect(small.sizeBytes().file).toBeLessThanOrEqual(1024 * 1024);
    expect(small.get("v399")).toMatchObject({ id: "v399" });
    small.close();
    expect(statSync(path).size).toBeLessThanOrEqual(1024 * 1024);
  });

  it("an entry the database refuses costs only itself, counted; entries that came as JSON without null fields are written", async () => {
    const dropped: number[] = [];
    const log = await RequestLog.open({ path: join(dir, "w.db"), retentionDays: 7, maxRows: 100, logger, onDropped: (n) => dropped.push(n) });
    log.record(entry("ok-1", Date.now()));
    log.record({ ...entry("bad", Date.now()), time: { not: "a number" } as never });
    const sparse = JSON.parse(JSON.stringify({ ...entry("sparse", Date.now()), ttftMs: undefined, traceId: undefined })) as RequestEntry;
    log.record(sparse);
    log.flush();
    expect(dropped).toEqual([1]);
    expect(log.get("ok-1")).toMatchObject({ id: "ok-1" });
    expect(log.get("sparse")).toMatchObject({ ttftMs: null, traceId: null });
    expect(log.get("bad")).toBeUndefined();
    log.close();
  });
});
