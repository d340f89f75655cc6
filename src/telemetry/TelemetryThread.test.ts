import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { getPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startOtlpCollector } from "../../test/helpers/otlpCollector.js";
import { createLogger } from "./createLogger.js";
import type { RequestEntry } from "./RequestLog.js";
import { TelemetryThread } from "./TelemetryThread.js";
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

  it("counts entries it cannot write as dropped and answers reads with unavailable", async () => {
    let dropped = 0;
    const warnings: string[] = [];
    const thread = await TelemetryThread.start({ serviceName: "t", requestLog: { path: "/dev/null/x/requests.db", retentionDays: 7, maxRows: 100 } }, createLogger("warn", "t", (l) => warnings.push(l)), (n) => (dropped += n));
    const log = thread.requestLog();
    log.record(entry("a", Date.now()));
    log.record(entry("b", Date.now()));
    await expect(log.query({ limit: 5 })).rejects.toMatchObject({ code: "unavailable" });
    expect(dropped).toBe(2);
    expect(warnings.join("")).toContain("request log disabled");
    await thread.close();
  });

  it.runIf(process.platform === "linux")("runs at a lower priority than the threads that serve requests (nice 10), leaving theirs alone", async () => {
    const nices = () =>
      readdirSync("/proc/self/task").map((tid) => {
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
        return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]); // field 19: nice
      });
    const before = nices().filter((n) => n === 10).length;
    const thread = await TelemetryThread.start({ serviceName: "t", requestLog: { path: join(dir, "n.db"), retentionDays: 7, maxRows: 100 } }, logger);
    await thread.requestLog().query({ limit: 1 }); // the thread is up and answering
    expect(nices().filter((n) => n === 10).length).toBe(before + 1);
    expect(getPriority()).toBe(0);
    await thread.close();
  });

  it("exports spans over OTLP/HTTP with their parents, attributes, status and resource; close sends what is left", async () => {
    const collector = await startOtlpCollector();
    try {
      const thread = await TelemetryThread.start({ serviceName: "smmf-unit", otlpEndpoint: collector.url }, logger);
      const tracing = new Tracing({ serviceName: "smmf-unit", sink: thread.spanSink() });
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
});
