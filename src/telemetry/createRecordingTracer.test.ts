import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Span, type Tracer } from "@opentelemetry/api";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { createRecordingTracer } from "./createRecordingTracer.js";
import type { FinishedSpan } from "./RecordedSpan.js";
import { readableSpanOf } from "./readableSpanOf.js";
import { toSpanRecord } from "./spanRecord.js";

const resource = resourceFromAttributes({ "service.name": "s" });

function recording(): { tracer: Tracer; spans: () => ReadableSpan[] } {
  const finished: FinishedSpan[] = [];
  return { tracer: createRecordingTracer((s) => finished.push(s)), spans: () => finished.map((s) => readableSpanOf(toSpanRecord(s), resource)) };
}

function sdk(): { tracer: Tracer; spans: () => ReadableSpan[] } {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  return { tracer: provider.getTracer("smmf"), spans: () => exporter.getFinishedSpans() };
}

/** What an exporter reads of a span, less ids and times. */
function shape(s: ReadableSpan) {
  return {
    name: s.name,
    kind: s.kind,
    status: s.status,
    attributes: s.attributes,
    events: s.events.map((e) => ({ name: e.name, attributes: e.attributes, dropped: e.droppedAttributesCount ?? 0 })),
    links: s.links.map((l) => ({ spanId: l.context.spanId, attributes: l.attributes, dropped: l.droppedAttributesCount ?? 0 })),
    dropped: [s.droppedAttributesCount, s.droppedEventsCount, s.droppedLinksCount],
    parent: s.parentSpanContext?.spanId,
    ended: s.ended,
  };
}

/** The same calls on a tracer, valid and invalid, as instrumentation might make them. */
function exercise(tracer: Tracer, error: Error): void {
  const linked = { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", traceFlags: TraceFlags.SAMPLED };
  const parent = tracer.startSpan("parent", { kind: SpanKind.SERVER, attributes: { a: 1, b: "two", c: true, list: [1, 2], bad: { nested: 1 } as never, mixed: [1, "x"] as never, "": 1 }, links: [{ context: linked, attributes: { why: "retry" } }] });
  parent.setAttribute("later", 3).setAttribute("undefined", undefined as never).setAttribute("a", 10);
  parent.setAttributes({ x: "y", withNull: ["a", null as never, "b"] });
  for (let i = 0; i < 130; i++) parent.setAttribute(`k${i}`, i); // past the limit of 128
  parent.addEvent("first token", { tokens: 1 });
  parent.addEvent("timed", Date.now());
  parent.recordException(error);
  parent.setStatus({ code: SpanStatusCode.UNSET });
  parent.setStatus({ code: SpanStatusCode.OK, message: "ignored for OK" });
  parent.setStatus({ code: SpanStatusCode.ERROR, message: "after OK: ignored" });
  parent.updateName("parent renamed");
  const child = tracer.startSpan("child", {}, trace.setSpan(ROOT_CONTEXT, parent));
  child.setStatus({ code: SpanStatusCode.ERROR, message: "boom" });
  child.end();
  parent.end();
  parent.setAttribute("after end", 1);
  parent.updateName("after end");
  parent.end();
}

describe("the recording tracer", () => {
  it("records what the OpenTelemetry SDK records for the same calls: attribute rules and limits, events, links, status, names, parents", () => {
    const ours = recording();
    const theirs = sdk();
    const error = new TypeError("bad thing");
    exercise(ours.tracer, error);
    exercise(theirs.tracer, error);
    const [a, b] = [ours.spans(), theirs.spans()];
    expect(a).toHaveLength(2);
    expect(a.map(shape).map((s) => ({ ...s, parent: s.parent && "parent" }))).toEqual(b.map(shape).map((s) => ({ ...s, parent: s.parent && "parent" })));
    // Spot checks of the rules both follow.
    const parent = a.find((s) => s.name === "parent renamed")!;
    expect(parent.attributes).toMatchObject({ a: 10, b: "two", later: 3, withNull: ["a", null, "b"] });
    expect(parent.attributes).not.toHaveProperty("bad");
    expect(parent.droppedAttributesCount).toBeGreaterThan(0);
    expect(parent.events.map((e) => e.name)).toEqual(["first token", "timed", "exception"]);
    expect(Object.keys(parent.attributes)).toHaveLength(128);
    expect(parent.status).toEqual({ code: SpanStatusCode.OK });
    expect(a.find((s) => s.name === "child")!.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
  });

  it("times spans on the monotonic clock: a child inside its parent, durations exact, explicit times as given", async () => {
    const { tracer, spans } = recording();
    const before = Date.now();
    const parent = tracer.startSpan("parent");
    await new Promise((r) => setTimeout(r, 5));
    const child = tracer.startSpan("child", {}, trace.setSpan(ROOT_CONTEXT, parent));
    child.end();
    parent.end();
    const explicit = tracer.startSpan("explicit", { startTime: new Date(1_700_000_000_000) });
    explicit.end([1_700_000_001, 500_000_000]);
    const after = Date.now();
    const ns = (t: [number, number]) => BigInt(t[0]) * 1_000_000_000n + BigInt(t[1]);
    const [c, p, e] = spans();
    for (const s of [c, p, e]) expect(ns(s.endTime) - ns(s.startTime)).toBe(ns(s.duration));
    expect(ns(p.startTime) <= ns(c.startTime) && ns(c.endTime) <= ns(p.endTime)).toBe(true);
    expect(ns(c.startTime) - ns(p.startTime) >= 4_000_000n).toBe(true);
    expect(Number(ns(p.startTime) / 1_000_000n)).toBeGreaterThanOrEqual(before - 1);
    expect(Number(ns(p.endTime) / 1_000_000n)).toBeLessThanOrEqual(after + 1);
    expect(e.startTime).toEqual([1_700_000_000, 0]);
    expect(e.duration).toEqual([1, 500_000_000]);
  });

  it("samples as the SDK's default: roots are sampled with fresh ids; an unsampled parent gets a non-recording span that carries its trace on", () => {
    const { tracer, spans } = recording();
    const root = tracer.startSpan("root");
    const other = tracer.startSpan("other");
    expect(root.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(root.spanContext().spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(root.spanContext().traceId).not.toBe(other.spanContext().traceId);
    expect(root.spanContext().traceFlags).toBe(TraceFlags.SAMPLED);
    expect(root.isRecording()).toBe(true);
    const unsampled = trace.setSpanContext(ROOT_CONTEXT, { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", traceFlags: TraceFlags.NONE, isRemote: true });
    const child = tracer.startSpan("child", {}, unsampled);
    expect(child.isRecording()).toBe(false);
    expect(child.spanContext()).toMatchObject({ traceId: "0af7651916cd43dd8448eb211c80319c", traceFlags: TraceFlags.NONE });
    expect(child.spanContext().spanId).not.toBe("b7ad6b7169203331");
    const ignoringParent = tracer.startSpan("root again", { root: true }, unsampled);
    expect(ignoringParent.spanContext().traceId).not.toBe("0af7651916cd43dd8448eb211c80319c");
    for (const s of [root, other, child, ignoringParent]) s.end();
    expect(spans().map((s) => s.name)).toEqual(["root", "other", "root again"]);
  });

  it("runs startActiveSpan's function with the new span and returns what it returns", () => {
    const { tracer, spans } = recording();
    const result = tracer.startActiveSpan("active", { kind: SpanKind.CLIENT }, (span: Span) => {
      span.end();
      return 42;
    });
    expect(result).toBe(42);
    expect(spans()).toMatchObject([{ name: "active", kind: SpanKind.CLIENT }]);
  });
});
