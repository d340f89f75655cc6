import type { SpanContext } from "@opentelemetry/api";
import { TraceState } from "@opentelemetry/core";
import type { Resource } from "@opentelemetry/resources";
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base";
import type { ContextRecord, SpanRecord } from "./spanRecord.js";

// Apart from spanRecord.ts: only what exports spans (the telemetry thread with an OTLP endpoint, tests'
// exporters) loads the SDK's classes; a process that only records spans, or none, does without them.

function spanContextOf(r: ContextRecord): SpanContext {
  return { traceId: r.traceId, spanId: r.spanId, traceFlags: r.traceFlags, isRemote: r.isRemote, traceState: r.traceState === undefined ? undefined : new TraceState(r.traceState) };
}

/** The span again, as exporters read it; spans of one resource share that object (exporters group by it). */
export function readableSpanOf(r: SpanRecord, resource: Resource): ReadableSpan {
  const context = spanContextOf(r.context);
  return {
    name: r.name,
    kind: r.kind,
    spanContext: () => context,
    parentSpanContext: r.parent && spanContextOf(r.parent),
    startTime: r.startTime,
    endTime: r.endTime,
    duration: r.duration,
    status: r.status,
    attributes: r.attributes,
    events: r.events,
    links: r.links.map((l) => ({ context: spanContextOf(l.context), attributes: l.attributes, droppedAttributesCount: l.droppedAttributesCount })),
    ended: true,
    resource,
    instrumentationScope: r.scope,
    droppedAttributesCount: r.dropped[0],
    droppedEventsCount: r.dropped[1],
    droppedLinksCount: r.dropped[2],
  };
}
