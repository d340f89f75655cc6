import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { describe, expect, it } from "vitest";
import { ByteReader } from "./ByteReader.js";
import { ByteWriter } from "./ByteWriter.js";
import { createRecordingTracer } from "./createRecordingTracer.js";
import type { FinishedSpan } from "./RecordedSpan.js";
import { decodeSpan, encodeSpan } from "./spanCodec.js";
import { readableSpanOf } from "./readableSpanOf.js";
import { toSpanRecord } from "./spanRecord.js";

/** Encodes spans on one side and decodes them from the transferred buffer, as the two threads do. */
function roundTrip(spans: FinishedSpan[]) {
  const w = new ByteWriter();
  for (const s of spans) encodeSpan(w, s);
  const { buffer, length } = w.take();
  const copy = structuredClone(buffer, { transfer: [buffer] });
  const r = new ByteReader(copy, length);
  const out = spans.map(() => decodeSpan(r));
  expect(r.done).toBe(true);
  return out;
}

describe("the span encoding between the serving and the telemetry thread", () => {
  it("carries every field of a finished span: ids, remote parent and trace state, times, status, attributes of every type, events, links", () => {
    const finished: FinishedSpan[] = [];
    const tracer = createRecordingTracer((s) => finished.push(s));
    // A remote parent with trace state, as a client's traceparent/tracestate headers give it.
    const parent = new W3CTraceContextPropagator().extract(
      ROOT_CONTEXT,
      { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "vendor=abc" },
      { get: (c, k) => (c as Record<string, string>)[k], keys: (c) => Object.keys(c as object) },
    );
    const linked = trace.getSpanContext(parent)!;
    const attributes = { "gen_ai.request.model": "m", text: "héllo ✓ 日本", int: 7, float: 0.25, negative: -3, yes: true, no: false, list: ["a", "b"], numbers: [1, 2.5], flags: [true, false], withNull: ["a", null, "b"], empty: [] };
    const span = tracer.startSpan("chat m", { kind: SpanKind.SERVER, attributes: attributes as never, links: [{ context: linked, attributes: { why: "retry" } }] }, parent);
    span.addEvent("first token", { tokens: 1 });
    span.setStatus({ code: SpanStatusCode.ERROR, message: "boom" });
    span.end();
    const plain = tracer.startSpan("plain", {}, trace.setSpan(ROOT_CONTEXT, span));
    plain.end();

    const [decoded, decodedPlain] = roundTrip(finished);
    expect(decoded).toEqual(JSON.parse(JSON.stringify(toSpanRecord(finished[0]))));
    expect(decodedPlain).toEqual(toSpanRecord(finished[1]));
    expect(decoded.attributes).toEqual(attributes);
    expect(Number.isInteger(decoded.attributes.int)).toBe(true);

    const resource = resourceFromAttributes({ "service.name": "s" });
    const readable = readableSpanOf(decoded, resource);
    expect(readable.spanContext()).toMatchObject({ traceId: "0af7651916cd43dd8448eb211c80319c", spanId: span.spanContext().spanId, traceFlags: 1 });
    expect(readable.spanContext().traceState?.serialize()).toBe("vendor=abc");
    expect(readable.parentSpanContext).toMatchObject({ traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", isRemote: true });
    expect(readable).toMatchObject({ name: "chat m", kind: SpanKind.SERVER, status: { code: SpanStatusCode.ERROR, message: "boom" }, ended: true });
    expect(readable.events).toEqual([expect.objectContaining({ name: "first token", attributes: { tokens: 1 } })]);
    expect(readable.links[0]).toMatchObject({ context: { spanId: "b7ad6b7169203331" }, attributes: { why: "retry" } });
    expect(readable.instrumentationScope.name).toBe("smmf");
    expect(readable.resource).toBe(resource);
    expect(readableSpanOf(decodedPlain, resource).parentSpanContext?.spanId).toBe(span.spanContext().spanId);
  });

  it("grows its buffer for spans larger than it, and starts a new one after each hand-over", () => {
    const finished: FinishedSpan[] = [];
    const tracer = createRecordingTracer((s) => finished.push(s));
    const big = "x".repeat(200_000);
    for (let i = 0; i < 3; i++) tracer.startSpan(`s${i}`, { attributes: { big, i } }).end();
    const decoded = roundTrip(finished);
    expect(decoded.map((d) => [d.name, d.attributes.i, (d.attributes.big as string).length])).toEqual([["s0", 0, 200_000], ["s1", 1, 200_000], ["s2", 2, 200_000]]);
    const w = new ByteWriter();
    w.string("first");
    const a = w.take();
    w.string("second");
    const b = w.take();
    expect(a.buffer).not.toBe(b.buffer);
    expect(new ByteReader(a.buffer, a.length).string()).toBe("first");
    expect(new ByteReader(b.buffer, b.length).string()).toBe("second");
  });
});
