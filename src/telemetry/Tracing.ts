import { defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, trace, type Context, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, SimpleSpanProcessor, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base";

export interface TracingOptions {
  /** `service.name` of the spans, e.g. "smmf-gateway". */
  serviceName: string;
  /** Where finished spans go: the telemetry thread's processor (it exports them over OTLP/HTTP). */
  processor?: SpanProcessor;
  /** Or export to this, each span as it ends (tests: an in-memory exporter). */
  exporter?: SpanExporter;
}

/**
 * OpenTelemetry tracing of one process: a tracer and W3C trace-context propagation (`traceparent`,
 * `tracestate`) for HTTP headers and gRPC metadata. Without a processor or exporter it is off: spans are
 * non-recording and cost next to nothing. The provider is this object's own (not the global one), so several
 * SMMF components in one process keep theirs apart.
 */
export class Tracing {
  readonly tracer: Tracer;
  readonly enabled: boolean;
  private readonly provider?: BasicTracerProvider;
  private readonly propagator = new W3CTraceContextPropagator();

  constructor(options: TracingOptions) {
    const processor = options.processor ?? (options.exporter && new SimpleSpanProcessor(options.exporter));
    this.enabled = processor !== undefined;
    if (processor) {
      this.provider = new BasicTracerProvider({ resource: resourceFromAttributes({ "service.name": options.serviceName }), spanProcessors: [processor] });
      this.tracer = this.provider.getTracer("smmf");
    } else {
      this.tracer = trace.getTracer("smmf");
    }
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
    await this.provider?.shutdown().catch(() => undefined);
  }
}
