import { defaultTextMapSetter, ROOT_CONTEXT, trace, type Context, type SpanContext, type TextMapGetter, type TextMapPropagator, type Tracer } from "@opentelemetry/api";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import { createRecordingTracer } from "./createRecordingTracer.js";
import type { FinishedSpan } from "./RecordedSpan.js";
import { toSpanRecord } from "./spanRecord.js";

/** Request headers as Node gives them: names in lower case. */
type IncomingHeaders = Record<string, string | string[] | undefined>;

/** Reads only the headers the propagator asks for (traceparent, tracestate), without copying the rest. */
const incomingHeadersGetter: TextMapGetter<IncomingHeaders> = { get: (c, key) => c[key], keys: (c) => Object.keys(c) };
const fetchHeadersGetter: TextMapGetter<Headers> = { get: (c, key) => c.get(key) ?? undefined, keys: (c) => [...c.keys()] };

export interface TracingOptions {
  /** `service.name` of the spans, e.g. "smmf-gateway". */
  serviceName: string;
  /** Where finished spans go: the telemetry thread (it exports them over OTLP/HTTP). */
  sink?: (span: FinishedSpan) => void;
  /** Or export to this, each span as it ends (tests: an in-memory exporter). */
  exporter?: SpanExporter;
}

/**
 * OpenTelemetry tracing of one process: a tracer and W3C trace-context propagation (`traceparent`,
 * `tracestate`) for HTTP headers and gRPC metadata. Without a sink or exporter it is off: spans are
 * non-recording and cost next to nothing. The tracer is this object's own (not the global one), so several
 * SMMF components in one process keep theirs apart. Its spans are `RecordedSpan`s, handed on when they end:
 * to the telemetry thread (encoded without JSON), where the SDK's OTLP exporter sends them.
 */
export class Tracing {
  readonly tracer: Tracer;
  readonly enabled: boolean;
  private readonly exporter?: SpanExporter;
  private readonly exports = new Set<Promise<void>>();

  /**
   * Tracing as `options` ask. The OpenTelemetry classes it needs (the W3C propagator; for an exporter, the
   * SDK's resource) are loaded only when it is on: a process that traces nothing does without them (~2 MB of
   * heap in an idle gateway).
   */
  static async create(options: TracingOptions): Promise<Tracing> {
    if (!options.sink && !options.exporter) return new Tracing(options);
    const { W3CTraceContextPropagator } = await import("@opentelemetry/core");
    const propagator = new W3CTraceContextPropagator();
    if (options.sink || !options.exporter) return new Tracing(options, propagator);
    const [{ resourceFromAttributes }, { readableSpanOf }] = await Promise.all([import("@opentelemetry/resources"), import("./readableSpanOf.js")]);
    const resource = resourceFromAttributes({ "service.name": options.serviceName });
    return new Tracing(options, propagator, (span) => readableSpanOf(toSpanRecord(span), resource));
  }

  /** Off: `new Tracing({ serviceName })`. On (a sink or an exporter): made by `Tracing.create`, which brings the propagator. */
  constructor(
    options: TracingOptions,
    private readonly propagator?: TextMapPropagator,
    readable?: (span: FinishedSpan) => ReadableSpan,
  ) {
    this.exporter = options.exporter;
    const sink = options.sink ?? (options.exporter && readable && this.exportEach(options.exporter, readable));
    if (sink && !propagator) throw new Error("tracing with a sink or an exporter is made by Tracing.create");
    this.enabled = sink !== undefined;
    this.tracer = sink ? createRecordingTracer(sink) : trace.getTracer("smmf");
  }

  /** Exports each span as it ends, as the SDK's simple span processor does. */
  private exportEach(exporter: SpanExporter, readable: (span: FinishedSpan) => ReadableSpan): (span: FinishedSpan) => void {
    return (span) => {
      const done = new Promise<void>((resolve) => exporter.export([readable(span)], () => resolve()));
      this.exports.add(done);
      void done.then(() => this.exports.delete(done));
    };
  }

  /** The context a request's trace-context headers carry (ROOT_CONTEXT when none or when off). */
  extract(headers: IncomingHeaders | Headers): Context {
    if (!this.propagator) return ROOT_CONTEXT;
    return headers instanceof Headers ? this.propagator.extract(ROOT_CONTEXT, headers, fetchHeadersGetter) : this.propagator.extract(ROOT_CONTEXT, headers, incomingHeadersGetter);
  }

  /** Trace-context headers for a call made within `ctx` (none when off). */
  inject(ctx: Context): Record<string, string> {
    const carrier: Record<string, string> = {};
    this.propagator?.inject(ctx, carrier, defaultTextMapSetter);
    return carrier;
  }

  /** Trace-context headers naming `span` as the parent (a context holding only it: no copy of the request's). */
  headersOf(span: SpanContext): Record<string, string> {
    return this.inject(trace.setSpanContext(ROOT_CONTEXT, span));
  }

  /** Exports what is left; a collector that is gone by then loses those spans, nothing else. */
  async shutdown(): Promise<void> {
    await Promise.all(this.exports);
    await this.exporter?.shutdown().catch(() => undefined);
  }
}
