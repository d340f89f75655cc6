import type { Attributes, HrTime, SpanContext, SpanKind, SpanStatus } from "@opentelemetry/api";
import type { TimedEvent } from "@opentelemetry/sdk-trace-base";
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
