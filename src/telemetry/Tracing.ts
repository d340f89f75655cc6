import { defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, trace, type Context, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { createRecordingTracer } from "./createRecordingTracer.js";
import { readableSpanOf, type SpanRecord } from "./spanRecord.js";

export interface TracingOptions {
  /** `service.name` of the spans, e.g. "smmf-gateway". */
  serviceName: string;
  /** Where finished spans go: the telemetry thread (it exports them over OTLP/HTTP). */
  sink?: (span: SpanRecord) => void;
  /** Or export to this, each span as it ends (tests: an in-memory exporter). */
  exporter?: SpanExporter;
}

/**
 * OpenTelemetry tracing of one process: a tracer and W3C trace-context propagation (`traceparent`,
 * `tracestate`) for HTTP headers and gRPC metadata. Without a sink or exporter it is off: spans are
 * non-recording and cost next to nothing. The tracer is this object's own (not the global one), so several
 * SMMF components in one process keep theirs apart. Its spans are `RecordedSpan`s: plain records handed on
 * when they end, exported by the SDK's OTLP exporter on the telemetry thread.
 */
export class Tracing {
  readonly tracer: Tracer;
  readonly enabled: boolean;
  private readonly propagator = new W3CTraceContextPropagator();
  private readonly exporter?: SpanExporter;
  private readonly exports = new Set<Promise<void>>();

  constructor(options: TracingOptions) {
    this.exporter = options.exporter;
    const sink = options.sink ?? (options.exporter && this.exportEach(options.exporter, options.serviceName));
    this.enabled = sink !== undefined;
    this.tracer = sink ? createRecordingTracer(sink) : trace.getTracer("smmf");
  }

  /** Exports each span as it ends, as the SDK's simple span processor does. */
  private exportEach(exporter: SpanExporter, serviceName: string): (span: SpanRecord) => void {
    const resource = resourceFromAttributes({ "service.name": serviceName });
    return (span) => {
      const done = new Promise<void>((resolve) =>
        exporter.export([readableSpanOf(span, resource)], () => resolve()),
      );
      this.exports.add(done);
      void done.then(() => this.exports.delete(done));
    };
  }

  /** The context a request's trace-context headers carry (ROOT_CONTEXT when none or when off). */
  extract(headers: Record<string, string | string[] | undefined> | Headers): Context {
    if (!this.enabled) return ROOT_CONTEXT;
    const carrier: Record<string, string> = {};
    if (headers instanceof Headers) headers.forEach((v, k) => (carrier[k] = v));
    else for (const [k, v] of Object.entries(headers)) if (typeof v === "string") carrier[k.toLowerCase()] = v;
    return this.propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
  }

  /** Trace-context headers for a call made within `ctx` (none when off). */
  inject(ctx: Context): Record<string, string> {
    const carrier: Record<string, string> = {};
    if (this.enabled) this.propagator.inject(ctx, carrier, defaultTextMapSetter);
    return carrier;
  }

  /** Exports what is left; a collector that is gone by then loses those spans, nothing else. */
  async shutdown(): Promise<void> {
    await Promise.all(this.exports);
    await this.exporter?.shutdown().catch(() => undefined);
  }
}
