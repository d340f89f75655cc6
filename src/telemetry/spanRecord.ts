import type { Attributes, HrTime, SpanContext, SpanKind, SpanStatus } from "@opentelemetry/api";
import { TraceState } from "@opentelemetry/core";
import type { Resource } from "@opentelemetry/resources";
import type { ReadableSpan, TimedEvent } from "@opentelemetry/sdk-trace-base";
import type { FinishedSpan } from "./RecordedSpan.js";

export interface ContextRecord {
  traceId: string;
  spanId: string;
  traceFlags: number;
  traceState?: string;
  isRemote?: boolean;
}

/** A finished span as plain data (the SDK's ReadableSpan without its objects): what the telemetry thread decodes, and what `readableSpanOf` turns back into the SDK's span data for exporters. */
export interface SpanRecord {
  context: ContextRecord;
  parent?: ContextRecord;
  name: string;
  kind: SpanKind;
  startTime: HrTime;
  endTime: HrTime;
  duration: HrTime;
  status: SpanStatus;
  attributes: Attributes;
  events: TimedEvent[];
  links: { context: ContextRecord; attributes?: Attributes; droppedAttributesCount?: number }[];
  dropped: [attributes: number, events: number, links: number];
  scope: { name: string; version?: string; schemaUrl?: string };
}

export function contextRecord(c: SpanContext): ContextRecord {
  const r: ContextRecord = { traceId: c.traceId, spanId: c.spanId, traceFlags: c.traceFlags };
  if (c.traceState) r.traceState = c.traceState.serialize();
  if (c.isRemote) r.isRemote = true;
  return r;
}

function spanContextOf(r: ContextRecord): SpanContext {
  return { traceId: r.traceId, spanId: r.spanId, traceFlags: r.traceFlags, isRemote: r.isRemote, traceState: r.traceState === undefined ? undefined : new TraceState(r.traceState) };
}

/** Milliseconds (since the epoch, or a duration) as [seconds, nanoseconds]. */
export function hrTimeOfMs(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.round((ms - seconds * 1000) * 1e6);
  return nanos >= 1e9 ? [seconds + 1, nanos - 1e9] : [seconds, nanos];
}

/** A span's start, end and duration from its start (epoch ms) and duration; the end is the start plus the duration, to the nanosecond. */
export function spanTimes(startMs: number, durationMs: number): Pick<SpanRecord, "startTime" | "endTime" | "duration"> {
  const start = hrTimeOfMs(startMs);
  const duration = hrTimeOfMs(durationMs);
  const nanos = start[1] + duration[1];
  return { startTime: start, endTime: nanos >= 1e9 ? [start[0] + duration[0] + 1, nanos - 1e9] : [start[0] + duration[0], nanos], duration };
}

/** A finished span's record. */
export function toSpanRecord(span: FinishedSpan): SpanRecord {
  return {
    context: contextRecord(span.context),
    parent: span.parent && contextRecord(span.parent),
    name: span.name,
    kind: span.kind,
    ...spanTimes(span.startMs, span.durationMs),
    status: span.status,
    attributes: span.attributes,
    events: span.events ?? [],
    links: (span.links ?? []).map((l) => ({ context: contextRecord(l.context), attributes: l.attributes, droppedAttributesCount: l.droppedAttributesCount })),
    dropped: [span.droppedAttributes, span.droppedEvents, span.droppedLinks],
    scope: SCOPE,
  };
}

/** The instrumentation scope of SMMF's spans. */
export const SCOPE = { name: "smmf" };

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
