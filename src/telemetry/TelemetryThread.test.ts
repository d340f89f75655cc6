import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { getPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startOtlpCollector } from "../../test/helpers/otlpCollector.js";
import { createLogger } from "./createLogger.js";
import type { FinishedSpan } from "./RecordedSpan.js";
import type { RequestEntry } from "./RequestLog.js";
import { TelemetryThread, type TelemetryThreadEvents } from "./TelemetryThread.js";
import type { TelemetryThreadSettings } from "./telemetryThreadProtocol.js";
import { Tracing } from "./Tracing.js";

let dir: string;
const logger = createLogger("silent");

function entry(id: string, time: number, model = "m"): RequestEntry {
  return { id, time, endpoint: "completions", model, instance: "m-1", engine: "llama.cpp", stream: true, params: { max_tokens: 3 }, prompt: "p", output: "o", status: 200, errorCode: null, errorMessage: null, latencyMs: 12.5, ttftMs: 3, promptTokens: 2, completionTokens: 3, retries: 0, traceId: null };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "smmf-tt-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("TelemetryThread", () => {
  it("keeps the request log: entries recorded are read back in order, with paging, filters and feedback", async () => {
    const thread = await TelemetryThread.start({ serviceName: "t", requestLog: { path: join(dir, "requests.db"), retentionDays: 7, maxRows: 100 } }, logger);
    const log = thread.requestLog();
    const now = Date.now();
    for (let i = 0; i < 5; i++) log.record(entry(`r${i}`, now + i, i % 2 ? "odd" : "even"));
    // Reads go after the records on the same channel: nothing recorded before is missed.
    const first = await log.query({ limit: 2 });
    expect(first.data.map((e) => e.id)).toEqual(["r4", "r3"]);
    const second = await log.query({ limit: 2, before: first.next! });
    expect(second.data.map((e) => e.id)).toEqual(["r2", "r1"]);
    expect((await log.query({ limit: 10, model: "odd" })).data.map((e) => e.id)).toEqual(["r3", "r1"]);
    expect(await log.get("r2")).toMatchObject({ id: "r2", stream: true, params: { max_tokens: 3 }, feedback: null });
    expect(await log.get("nope")).toBeUndefined();
    expect(await log.setFeedback("r2", { score: 1, comment: "good", label: null })).toMatchObject({ feedback: { score: 1, comment: "good", label: null } });
    expect(await log.setFeedback("nope", { score: 1, comment: null, label: null })).toBeUndefined();
    // An error in the thread comes back as the same SmmfError.
    await expect(log.query({ limit: 1, before: "bm90LWEtY3Vyc29y" })).rejects.toMatchObject({ code: "invalid_argument", param: "before" });
    await thread.close();
    // Closed: written to disk, and the thread answers no more.
    await expect(log.get("r2")).rejects.toMatchObject({ code: "unavailable" });
    const reopened = await TelemetryThread.start({ serviceName: "t", requestLog: { path: join(dir, "requests.db"), retentionDays: 7, maxRows: 100 } }, logger);
    expect(await reopened.requestLog().get("r2")).toMatchObject({ feedback: { score: 1 } });
    await reopened.close();
  });

  it("with idleStopMs, runs only while there is telemetry: no thread until the first record, stopped after the idle time with everything written, started again by the next read or record", async () => {
    let restarts = 0;
    let downs = 0;
    const thread = await TelemetryThread.start({ serviceName: "t", requestLog: { path: join(dir, "requests.db"), retentionDays: 7, maxRows: 100 } }, logger, { restarted: () => restarts++ }, { idleStopMs: 300 });
    thread.on("down", () => downs++);
    expect(thread.running).toBe(false);
    const log = thread.requestLog();
    const up = once(thread, "up");
    log.record(entry("a", Date.now()));
    await up;
    expect(thread.running).toBe(true);
    await once(thread, "idle");
    expect(thread.running).toBe(false);
    // A read starts it again, and sees what the stopped thread wrote.
    expect(await log.get("a")).toMatchObject({ id: "a" });
    expect(thread.running).toBe(true);
    await once(thread, "idle");
    // Records handed over while it is stopped wait for the next thread; none is lost.
    for (let i = 0; i < 20; i++) log.record(entry(`b${i}`, Date.now() + i));
    expect((await log.query({ limit: 50 })).data).toHaveLength(21);
    // A planned stop is neither a death nor a restart.
    expect(downs).toBe(0);
    expect(restarts).toBe(0);
    await thread.close();
    expect(thread.running).toBe(false);
  });

  it("counts entries it cannot write as dropped and answers reads with unavailable", async () => {
    let dropped = 0;
    const warnings: string[] = [];
    const thread = await TelemetryThread.start({ serviceName: "t", requestLog: { path: "/dev/null/x/requests.db", retentionDays: 7, maxRows: 100 } }, createLogger("warn", "t", (l) => warnings.push(l)), { dropped: (n, reason) => (reason === "write" ? (dropped += n) : undefined) });
    const log = thread.requestLog();
    log.record(entry("a", Date.now()));
    log.record(entry("b", Date.now()));
    await expect(log.query({ limit: 5 })).rejects.toMatchObject({ code: "unavailable" });
    expect(dropped).toBe(2);
    expect(warnings.join("")).toContain("request log disabled");
    await thread.close();
  });

  it.runIf(process.platform === "linux")("runs at a lower priority than the threads that serve requests (nice 10), leaving theirs alone", async () => {
    // Threads (by id) that run at nice 10; one that exits while being read is left out.
    const niceThreads = () =>
      new Set(
        readdirSync("/proc/self/task").filter((tid) => {
          try {
            const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
            return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]) === 10; // field 19: nice
          } catch {
            return false;
          }
        }),
      );
    const before = niceThreads();
    const thread = await TelemetryThread.start({ serviceName: "t", requestLog: { path: join(dir, "n.db"), retentionDays: 7, maxRows: 100 } }, logger);
    await thread.requestLog().query({ limit: 1 }); // the thread is up and answering
    // Exactly one new nice-10 thread (an earlier test's telemetry thread may still be going away meanwhile).
    expect([...niceThreads()].filter((tid) => !before.has(tid))).toHaveLength(1);
    expect(getPriority()).toBe(0);
    await thread.close();
  });

  it("exports spans over OTLP/HTTP with their parents, attributes, status and resource; close sends what is left", async () => {
    const collector = await startOtlpCollector();
    try {
      const thread = await TelemetryThread.start({ serviceName: "smmf-unit", otlpEndpoint: collector.url }, logger);
      const tracing = await Tracing.create({ serviceName: "smmf-unit", sink: thread.spanSink() });
      const parent = tracing.tracer.startSpan("parent", { kind: SpanKind.SERVER, attributes: { "gen_ai.request.model": "m", "gen_ai.response.finish_reasons": ["length"] } });
      const child = tracing.tracer.startSpan("child", { kind: SpanKind.INTERNAL }, trace.setSpan(tracing.extract({}), parent));
      child.setStatus({ code: SpanStatusCode.ERROR, message: "boom" });
      child.end();
      parent.setAttribute("gen_ai.usage.output_tokens", 7);
      parent.end();
      await tracing.shutdown();
      await thread.close();
      expect(collector.requests.length).toBeGreaterThanOrEqual(1);
      expect(collector.requests.every((r) => r.path === "/v1/traces")).toBe(true);
      const resources = collector.requests.flatMap((r) => r.body.resourceSpans);
      expect(resources.map((r) => r.resource.attributes.find((a) => a.key === "service.name")?.value)).toContainEqual({ stringValue: "smmf-unit" });
      const spans = resources.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans));
      expect(spans.map((s) => s.name).sort()).toEqual(["child", "parent"]);
      const p = spans.find((s) => s.name === "parent")!;
      const c = spans.find((s) => s.name === "child")!;
      expect(p.traceId).toBe(parent.spanContext().traceId);
      expect(p.spanId).toBe(parent.spanContext().spanId);
      expect(p.parentSpanId ?? "").toBe("");
      expect(c.traceId).toBe(p.traceId);
      expect(c.parentSpanId).toBe(p.spanId);
      expect(p.kind).toBe(2); // OTLP's SPAN_KIND_SERVER
      expect(c.status).toMatchObject({ code: 2, message: "boom" });
      expect(p.attributes).toContainEqual({ key: "gen_ai.usage.output_tokens", value: { intValue: 7 } });
      expect(p.attributes).toContainEqual({ key: "gen_ai.response.finish_reasons", value: { arrayValue: { values: [{ stringValue: "length" }] } } });
      for (const span of [p, c]) expect(BigInt(span.endTimeUnixNano) >= BigInt(span.startTimeUnixNano)).toBe(true);
      expect(BigInt(p.endTimeUnixNano) >= BigInt(c.endTimeUnixNano)).toBe(true); // spans are timed on the monotonic clock
    } finally {
      await collector.close();
    }
  });

  describe("no record can break it", () => {
    /** Counts of what the thread reports, by "record/reason". */
    function counting() {
      const counts: Record<string, number> = {};
      let restarts = 0;
      const add = (key: string, n: number) => (counts[key] = (counts[key] ?? 0) + n);
      const events: TelemetryThreadEvents = {
        dropped: (n, reason, record) => add(`dropped ${record}/${reason}`, n),
        replaced: (n, reason, record) => add(`replaced ${record}/${reason}`, n),
        restarted: () => restarts++,
      };
      return { counts, events, restarts: () => restarts };
    }

    function nested(depth: number): unknown {
      let v: unknown = "x";
      for (let i = 0; i < depth; i++) v = [v];
      return v;
    }

    it("a record that cannot be encoded is dropped or kept reduced, and counted; the records around it get through", async () => {
      const collector = await startOtlpCollector();
      const c = counting();
      const thread = await TelemetryThread.start({ serviceName: "t", otlpEndpoint: collector.url, requestLog: { path: join(dir, "e.db"), retentionDays: 7, maxRows: 100 } }, logger, c.events);
      try {
        const log = thread.requestLog();
        const now = Date.now();
        log.record(entry("before", now));
        // Parameters too deep for JSON.stringify (the request that once killed the thread), a BigInt, and an
        // entry whose field throws when read: none of them may leave a half-written frame.
        log.record({ ...entry("deep", now + 1), params: { stop: nested(100_000) } });
        log.record({ ...entry("bigint", now + 2), params: { seed: 10n } });
        const throwing = { ...entry("throws", now + 3) };
        Object.defineProperty(throwing, "model", { enumerable: true, get: () => { throw new Error("no model"); } });
        log.record(throwing);
        log.record({ ...entry("surrogates", now + 4), prompt: "lone \ud800 and \udc00 halves", output: "fine ✓" });
        log.record({ ...entry("huge", now + 5), prompt: "p".repeat(17 * 1024 * 1024) });
        log.record(entry("after", now + 6));

        const tracing = await Tracing.create({ serviceName: "t", sink: thread.spanSink() });
        tracing.tracer.startSpan("span-before").end();
        // A span whose attributes throw half-way through encoding: the frame is rewound to before it.
        const good = { context: { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", traceFlags: 1 }, parent: undefined, name: "bad", kind: SpanKind.INTERNAL, startMs: Date.now(), durationMs: 1, status: { code: 0 }, droppedAttributes: 0, events: undefined, droppedEvents: 0, links: undefined, droppedLinks: 0 };
        const attributes = { first: "ok" } as Record<string, unknown>;
        Object.defineProperty(attributes, "second", { enumerable: true, get: () => { throw new Error("unreadable"); } });
        thread.spanSink()({ ...good, attributes } as unknown as FinishedSpan);
        tracing.tracer.startSpan("span-after").end();

        const ids = (await log.query({ limit: 10 })).data.map((e) => e.id);
        expect(ids).toEqual(["after", "huge", "surrogates", "bigint", "deep", "before"]);
        expect((await log.get("deep"))?.params).toEqual({ _omitted: "parameters that cannot be written as JSON are not kept" });
        expect((await log.get("bigint"))?.params).toEqual({ _omitted: "parameters that cannot be written as JSON are not kept" });
        expect((await log.get("huge"))?.prompt).toHaveLength(2_000);
        expect((await log.get("surrogates"))?.prompt).toBe("lone \ufffd and \ufffd halves");
        expect(c.counts).toEqual({ "dropped entry/encode": 1, "dropped span/encode": 1, "replaced entry/unserializable": 2, "replaced entry/too_large": 1 });
        await tracing.shutdown();
        await thread.close();
        expect(collector.spans().map((sp) => sp.name).sort()).toEqual(["span-after", "span-before"]);
      } finally {
        await thread.close();
        await collector.close();
      }
    });

    it("records past the bound of the queue to the thread are dropped (queue_full) and counted; the others are written", async () => {
      const c = counting();
      const thread = await TelemetryThread.start({ serviceName: "t", requestLog: { path: join(dir, "q.db"), retentionDays: 7, maxRows: 100_000 } }, logger, c.events);
      const log = thread.requestLog();
      const now = Date.now();
      // Synchronously: nothing is sent meanwhile, and the queue holds 20,000.
      for (let i = 0; i < 20_003; i++) log.record(entry(`q${i}`, now + i));
      expect(c.counts).toEqual({ "dropped entry/queue_full": 3 });
      expect((await log.query({ limit: 1 })).data.map((e) => e.id)).toEqual(["q19999"]);
      expect(await log.get("q0")).toMatchObject({ id: "q0" });
      expect(c.counts).toEqual({ "dropped entry/queue_full": 3 });
      await thread.close();
    });

    it.each(["terminate", "throw"] as const)("a thread that dies (%s) is started again after a backoff, its losses counted; the request log answers again", async (how) => {
      const c = counting();
      const thread = await TelemetryThread.start({ serviceName: "t", requestLog: { path: join(dir, "r.db"), retentionDays: 7, maxRows: 100 } }, logger, c.events, { restartDelayMs: 50 });
      const log = thread.requestLog();
      const now = Date.now();
      log.record(entry("kept", now));
      expect((await log.query({ limit: 5 })).data.map((e) => e.id)).toEqual(["kept"]);

      // A record handed over, not yet written (the log writes every 200 ms), when the thread dies: lost, and counted.
      log.record(entry("in-flight", now + 1));
      const up = once(thread, "up");
      await thread.failForTesting(how);
      expect(thread.running).toBe(false);
      await expect(log.query({ limit: 5 })).rejects.toMatchObject({ code: "unavailable" });
      // Recorded while it is down: waits for the next thread.
      log.record(entry("while-down", now + 2));
      await up;
      expect(thread.running).toBe(true);
      expect(thread.restarts).toBe(1);
      expect(c.restarts()).toBe(1);
      expect((await log.query({ limit: 5 })).data.map((e) => e.id)).toEqual(["while-down", "kept"]);
      expect(c.counts).toEqual({ "dropped entry/thread_down": 1 });

      // Again, and the log still answers; then it closes as usual.
      const again = once(thread, "up");
      await thread.failForTesting(how);
      await again;
      log.record(entry("later", now + 3));
      expect((await log.get("later"))?.id).toBe("later");
      expect(thread.restarts).toBe(2);
      await thread.close();
      await expect(log.get("later")).rejects.toMatchObject({ code: "unavailable" });
    });

    it("a thread that cannot start is tried again with a growing backoff, each try counted", async () => {
      const c = counting();
      const warnings: string[] = [];
      // Settings that cannot be handed to a thread (a function) make every start fail.
      const settings = { serviceName: "t", unusable: () => undefined } as unknown as TelemetryThreadSettings;
      const thread = await TelemetryThread.start(settings, createLogger("warn", "t", (l) => warnings.push(l)), c.events, { restartDelayMs: 20, maxRestartDelayMs: 80 });
      expect(thread.running).toBe(false);
      for (let i = 0; i < 3; i++) await once(thread, "down");
      expect(c.restarts()).toBe(3);
      const delays = warnings.map((l) => JSON.parse(l) as { msg: string; restartInMs: number });
      expect(delays.map((d) => d.restartInMs)).toEqual([20, 40, 80, 80]);
      expect(delays[0].msg).toMatch(/^the telemetry thread could not start: /);
      await expect(thread.requestLog().query({ limit: 1 })).rejects.toMatchObject({ code: "unavailable" });
      // Recorded meanwhile, and never handed over: counted when it closes.
      thread.requestLog().record(entry("never", Date.now()));
      await thread.close();
      expect(c.counts).toEqual({ "dropped entry/thread_down": 1 });
    });
  });
});
