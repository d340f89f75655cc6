import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { describe, expect, it } from "vitest";
import { createRecordingTracer } from "./createRecordingTracer.js";
import { readableSpanOf, type SpanRecord } from "./spanRecord.js";

describe("span records", () => {
  it("carry a finished span across JSON and back as exporters read it", () => {
    const records: SpanRecord[] = [];
    const tracer = createRecordingTracer((r) => records.push(r));
    // A remote parent with trace state, as a client's traceparent/tracestate headers give it.
    const parent = new W3CTraceContextPropagator().extract(
      ROOT_CONTEXT,
      { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "vendor=abc" },
      { get: (c, k) => (c as Record<string, string>)[k], keys: (c) => Object.keys(c as object) },
    );
    const linked = trace.getSpanContext(parent)!;
    const span = tracer.startSpan("chat m", { kind: SpanKind.SERVER, attributes: { "gen_ai.request.model": "m", list: ["a", "b"] }, links: [{ context: linked, attributes: { why: "retry" } }] }, parent);
    span.addEvent("first token", { tokens: 1 });
    span.setStatus({ code: SpanStatusCode.ERROR, message: "boom" });
    span.end();
    expect(records).toHaveLength(1);
    const resource = resourceFromAttributes({ "service.name": "s" });
    const copy = readableSpanOf(JSON.parse(JSON.stringify(records[0])), resource);

    expect(copy.spanContext()).toMatchObject({ traceId: span.spanContext().traceId, spanId: span.spanContext().spanId, traceFlags: 1 });
    expect(copy.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(copy.spanContext().traceState?.serialize()).toBe("vendor=abc");
    expect(copy.parentSpanContext).toMatchObject({ traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", isRemote: true });
    expect(copy).toMatchObject({ name: "chat m", kind: SpanKind.SERVER, startTime: records[0].startTime, endTime: records[0].endTime, duration: records[0].duration, status: { code: SpanStatusCode.ERROR, message: "boom" }, ended: true });
    expect(copy.attributes).toEqual({ "gen_ai.request.model": "m", list: ["a", "b"] });
    expect(copy.events).toEqual([expect.objectContaining({ name: "first token", attributes: { tokens: 1 } })]);
    expect(copy.links[0]).toMatchObject({ context: { spanId: "b7ad6b7169203331" }, attributes: { why: "retry" } });
    expect(copy.instrumentationScope.name).toBe("smmf");
    expect(copy.resource).toBe(resource);
  });
});
