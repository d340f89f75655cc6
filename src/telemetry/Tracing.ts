import { defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, trace, type Context, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base";

export interface TracingOptions {
  /** `service.name` of the spans, e.g. "smmf-gateway". */
  serviceName: string;
  /** OTLP/HTTP endpoint of a collector (e.g. http://collector:4318); spans go to `<endpoint>/v1/traces`. */
  otlpEndpoint?: string;
  /** Export to this instead (tests: an in-memory exporter), each span as it ends. */
  exporter?: SpanExporter;
}

/**
 * OpenTelemetry tracing of one process: a tracer and W3C trace-context propagation (`traceparent`,
 * `tracestate`) for HTTP headers and gRPC metadata. Without an endpoint or exporter it is off: spans are
 * non-recording and cost next to nothing. The provider is this object's own (not the global one), so several
 * SMMF components in one process keep theirs apart.
 */
export class Tracing {
  readonly tracer: Tracer;
  readonly enabled: boolean;
  private readonly provider?: BasicTracerProvider;
  private readonly propagator = new W3CTraceContextPropagator();

  constructor(options: TracingOptions) {
    let exporter = options.exporter;
    if (!exporter && options.otlpEndpoint) exporter = createOtlpExporter(options.otlpEndpoint);
    this.enabled = exporter !== undefined;
    if (exporter) {
      // Small batches often: serializing a large batch at once would hold the event loop for milliseconds.
      const processor = options.exporter ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter, { scheduledDelayMillis: 500, maxExportBatchSize: 64, maxQueueSize: 4096 });
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

let otlpExporterClass: (new (config: { url: string }) => SpanExporter) | undefined;

/** Loaded at start-up by loadOtlpExporter(): the exporter's module is only imported when an endpoint is set. */
function createOtlpExporter(endpoint: string): SpanExporter {
  if (!otlpExporterClass) throw new Error("call loadOtlpExporter() before configuring an OTLP endpoint");
  return new otlpExporterClass({ url: `${endpoint.replace(/\/+$/, "")}/v1/traces` });
}

/** Imports the OTLP/HTTP exporter (done once, before a Tracing with an endpoint is made). */
export async function loadOtlpExporter(): Promise<void> {
  otlpExporterClass ??= (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter as unknown as typeof otlpExporterClass;
}
