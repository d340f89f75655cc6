import { context as contextApi, isSpanContextValid, trace, TraceFlags, SpanKind, type Context, type Span, type SpanOptions, type Tracer } from "@opentelemetry/api";
import { randomHexId } from "./randomHexId.js";
import { RecordedSpan, type FinishedSpan } from "./RecordedSpan.js";

/**
 * An OpenTelemetry tracer whose spans, `RecordedSpan`s, are handed to `sink` when they end. Sampling is the SDK's default,
 * parent-based always-on: a root span is sampled; a child follows its parent's sampled flag (a client's
 * `traceparent` with flags 00 gets non-recording spans that carry the trace on, as the SDK's do).
 */
export function createRecordingTracer(sink: (span: FinishedSpan) => void): Tracer {
  const startSpan = (name: string, options: SpanOptions = {}, ctx: Context = contextApi.active()): Span => {
    const parent = options.root ? undefined : trace.getSpanContext(ctx);
    const validParent = parent && isSpanContextValid(parent) ? parent : undefined;
    const traceId = validParent?.traceId ?? randomHexId(16);
    const spanId = randomHexId(8);
    if (validParent && (validParent.traceFlags & TraceFlags.SAMPLED) === 0) {
      return trace.wrapSpanContext({ traceId, spanId, traceFlags: TraceFlags.NONE, traceState: validParent.traceState });
    }
    const spanContext = { traceId, spanId, traceFlags: TraceFlags.SAMPLED, traceState: validParent?.traceState };
    return new RecordedSpan(spanContext, validParent, name, options.kind ?? SpanKind.INTERNAL, options.attributes, options.links, options.startTime, sink);
  };
  function startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: unknown[]): ReturnType<F> {
    const fn = rest.pop() as F;
    const [options, ctx = contextApi.active()] = rest as [SpanOptions | undefined, Context | undefined];
    const span = startSpan(name, options, ctx);
    return contextApi.with(trace.setSpan(ctx, span), fn as (span: Span) => ReturnType<F>, undefined, span);
  }
  return { startSpan, startActiveSpan };
}
