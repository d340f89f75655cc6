import { SpanStatusCode, type Attributes, type AttributeValue, type Exception, type Link, type Span, type SpanContext, type SpanKind, type SpanStatus, type TimeInput } from "@opentelemetry/api";
import type { TimedEvent } from "@opentelemetry/sdk-trace-base";
import { hrTimeOfMs } from "./spanRecord.js";

/** Attributes a span, an event or a link keeps at most (the OpenTelemetry SDK's default limit). */
const MAX_ATTRIBUTES = 128;
/** Events and links a span keeps at most (the SDK's defaults). */
const MAX_EVENTS = 128;
const MAX_LINKS = 128;
const UNSET: SpanStatus = { code: SpanStatusCode.UNSET };

/** Now, in milliseconds since the epoch, with the monotonic clock's sub-millisecond precision. */
function epochMsNow(): number {
  return performance.timeOrigin + performance.now();
}

/** A time as the OpenTelemetry API gives it (epoch or performance.now() milliseconds, HrTime, Date) in epoch milliseconds. */
function epochMsOf(time: TimeInput | undefined): number {
  if (time === undefined) return epochMsNow();
  if (typeof time === "number") return time < performance.timeOrigin ? performance.timeOrigin + time : time;
  if (time instanceof Date) return time.getTime();
  return time[0] * 1000 + time[1] / 1e6;
}

function isPrimitive(v: unknown): boolean {
  return typeof v === "string" || typeof v === "number" || typeof v === "boolean";
}

/** An attribute value the OpenTelemetry data model allows: a primitive, or an array of one primitive type (nulls allowed). */
function isAttributeValue(v: unknown): v is AttributeValue {
  if (isPrimitive(v)) return true;
  if (!Array.isArray(v)) return false;
  let type: string | undefined;
  for (const e of v) {
    if (e === null || e === undefined) continue;
    if (!isPrimitive(e) || (type !== undefined && typeof e !== type)) return false;
    type = typeof e;
  }
  return true;
}

/** The valid attributes of `from` (at most `MAX_ATTRIBUTES`), how many were dropped for the limit, and how many were kept. */
function sanitized(from: Attributes | undefined): [Attributes, number, number] {
  const to: Attributes = {};
  let count = 0;
  let dropped = 0;
  if (from) {
    for (const key in from) {
      const value = from[key];
      if (key.length === 0 || !isAttributeValue(value)) continue;
      if (count >= MAX_ATTRIBUTES) dropped++;
      else (to[key] = Array.isArray(value) ? value.slice() : value), count++;
    }
  }
  return [to, dropped, count];
}

/** A link as a span keeps it. */
export interface SpanLink {
  context: SpanContext;
  attributes: Attributes;
  droppedAttributesCount: number;
}

/** A span as its sink reads it once it has ended. */
export interface FinishedSpan {
  readonly context: SpanContext;
  readonly parent: SpanContext | undefined;
  readonly name: string;
  readonly kind: SpanKind;
  /** Start, in milliseconds since the epoch (sub-millisecond precision). */
  readonly startMs: number;
  readonly durationMs: number;
  readonly status: SpanStatus;
  readonly attributes: Attributes;
  readonly droppedAttributes: number;
  /** Undefined when there are none (most spans). */
  readonly events: TimedEvent[] | undefined;
  readonly droppedEvents: number;
  readonly links: SpanLink[] | undefined;
  readonly droppedLinks: number;
}

/**
 * A sampled span that records what it is told and, when it ends, hands itself to its sink (the telemetry
 * thread's encoder, or an exporter in tests) as a `FinishedSpan`. It follows the OpenTelemetry API and the
 * SDK's data model (attribute rules and limits, events, links, status, times), without the SDK's per-span
 * machinery: on the request path a span costs a few microseconds and a few hundred bytes.
 */
export class RecordedSpan implements Span, FinishedSpan {
  name: string;
  readonly startMs: number;
  durationMs = 0;
  private readonly startedAt = performance.now();
  readonly attributes: Attributes;
  droppedAttributes: number;
  private attributeCount: number;
  events: TimedEvent[] | undefined;
  droppedEvents = 0;
  links: SpanLink[] | undefined;
  droppedLinks = 0;
  status: SpanStatus = UNSET;
  private ended = false;

  constructor(
    readonly context: SpanContext,
    readonly parent: SpanContext | undefined,
    name: string,
    readonly kind: SpanKind,
    attributes: Attributes | undefined,
    links: Link[] | undefined,
    startTime: TimeInput | undefined,
    private readonly sink: (span: FinishedSpan) => void,
  ) {
    this.name = name;
    this.startMs = startTime === undefined ? performance.timeOrigin + this.startedAt : epochMsOf(startTime);
    [this.attributes, this.droppedAttributes, this.attributeCount] = sanitized(attributes);
    if (links) this.addLinks(links);
  }

  spanContext(): SpanContext {
    return this.context;
  }

  setAttribute(key: string, value: AttributeValue): this {
    if (this.ended || key.length === 0 || !isAttributeValue(value)) return this;
    if (!(key in this.attributes)) {
      if (this.attributeCount >= MAX_ATTRIBUTES) {
        this.droppedAttributes++;
        return this;
      }
      this.attributeCount++;
    }
    this.attributes[key] = Array.isArray(value) ? value.slice() : value;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const key in attributes) this.setAttribute(key, attributes[key] as AttributeValue);
    return this;
  }

  addEvent(name: string, attributesOrStartTime?: Attributes | TimeInput, startTime?: TimeInput): this {
    if (this.ended) return this;
    this.events ??= [];
    if (this.events.length >= MAX_EVENTS) {
      this.droppedEvents++;
      return this;
    }
    const timeGiven = typeof attributesOrStartTime === "number" || Array.isArray(attributesOrStartTime) || attributesOrStartTime instanceof Date;
    const [attributes, droppedAttributesCount] = sanitized(timeGiven ? undefined : (attributesOrStartTime as Attributes | undefined));
    this.events.push({ name, attributes, time: hrTimeOfMs(epochMsOf(timeGiven ? (attributesOrStartTime as TimeInput) : startTime)), droppedAttributesCount });
    return this;
  }

  addLink(link: Link): this {
    if (this.ended) return this;
    this.links ??= [];
    if (this.links.length >= MAX_LINKS) {
      this.droppedLinks++;
      return this;
    }
    const [attributes, droppedAttributesCount] = sanitized(link.attributes);
    this.links.push({ context: link.context, attributes, droppedAttributesCount: droppedAttributesCount + (link.droppedAttributesCount ?? 0) });
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  setStatus(status: SpanStatus): this {
    // As in the SDK: UNSET changes nothing, and OK is final.
    if (this.ended || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this;
    this.status = status.code === SpanStatusCode.ERROR ? { code: status.code, message: typeof status.message === "string" ? status.message : undefined } : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (!this.ended) this.name = name;
    return this;
  }

  isRecording(): boolean {
    return !this.ended;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === "string") attributes["exception.message"] = exception;
    else {
      if (exception.name || exception.code !== undefined) attributes["exception.type"] = exception.name ?? String(exception.code);
      if (exception.message) attributes["exception.message"] = exception.message;
      if (exception.stack) attributes["exception.stacktrace"] = exception.stack;
    }
    this.addEvent("exception", attributes, time);
  }

  end(endTime?: TimeInput): void {
    if (this.ended) return;
    this.ended = true;
    // The duration from the monotonic clock (as the SDK does).
    this.durationMs = endTime === undefined ? performance.now() - this.startedAt : Math.max(0, epochMsOf(endTime) - this.startMs);
    this.sink(this);
  }
}
