import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { readableSpanOf, toSpanRecord } from "./spanRecord.js";
import { Tracing } from "./Tracing.js";

describe("span records", () => {
  it("carry a finished span across JSON and back as exporters read it", () => {
    const exporter = new InMemorySpanExporter();
    const tracing = new Tracing({ serviceName: "s", exporter });
    // A remote parent with trace state, as a client's traceparent/tracestate headers give it.
    const parent = new W3CTraceContextPropagator().extract(
      ROOT_CONTEXT,
      { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "vendor=abc" },
      { get: (c, k) => (c as Record<string, string>)[k], keys: (c) => Object.keys(c as object) },
    );
    const linked = trace.getSpanContext(parent)!;
    const span = tracing.tracer.startSpan("chat m", { kind: SpanKind.SERVER, attributes: { "gen_ai.request.model": "m", list: ["a", "b"] }, links: [{ context: linked, attributes: { why: "retry" } }] }, parent);
    span.addEvent("first token", { tokens: 1 });
    span.setStatus({ code: SpanStatusCode.ERROR, message: "boom" });
    span.end();
    const [original] = exporter.getFinishedSpans();
    const resource = resourceFromAttributes({ "service.name": "s" });
    const copy = readableSpanOf(JSON.parse(JSON.stringify(toSpanRecord(original))), resource);

    expect(copy.spanContext()).toMatchObject({ traceId: original.spanContext().traceId, spanId: original.spanContext().spanId, traceFlags: 1 });
    expect(copy.spanContext().traceState?.serialize()).toBe("vendor=abc");
    expect(copy.parentSpanContext).toMatchObject({ traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", isRemote: true });
    expect(copy).toMatchObject({ name: "chat m", kind: SpanKind.SERVER, startTime: original.startTime, endTime: original.endTime, duration: original.duration, status: { code: SpanStatusCode.ERROR, message: "boom" }, ended: true });
    expect(copy.attributes).toEqual({ "gen_ai.request.model": "m", list: ["a", "b"] });
    expect(copy.events).toEqual([expect.objectContaining({ name: "first token", attributes: { tokens: 1 } })]);
    expect(copy.links[0]).toMatchObject({ context: { spanId: "b7ad6b7169203331" }, attributes: { why: "retry" } });
    expect(copy.instrumentationScope.name).toBe("smmf");
    expect(copy.resource).toBe(resource);
  });
});
