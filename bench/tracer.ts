// The spans of one request as SMMF makes them (gateway, worker, engine: names, GenAI attributes, trace
// context injected and extracted), timed on the OpenTelemetry SDK's tracer and on SMMF's recording tracer,
// each handing its finished spans to a sink that keeps nothing; and SMMF's tracer with its real hand-over
// (each span encoded into the buffer that goes to the telemetry thread). Blocks alternate so noise falls on all.
import { ROOT_CONTEXT, SpanKind, trace, type Tracer } from "@opentelemetry/api";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
import { ByteWriter } from "../src/telemetry/ByteWriter.js";
import { encodeSpan } from "../src/telemetry/spanCodec.js";
import { Tracing } from "../src/telemetry/Tracing.js";

const BLOCKS = 20;
const PER_BLOCK = 2_000;

async function sdkTracing(): Promise<Tracing> {
  const tracing = await Tracing.create({ serviceName: "bench", sink: () => undefined });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": "bench" }),
    spanProcessors: [{ onStart: () => undefined, onEnd: () => undefined, forceFlush: async () => undefined, shutdown: async () => undefined }],
  });
  (tracing as { tracer: Tracer }).tracer = provider.getTracer("smmf");
  return tracing;
}

function oneRequest(tracing: Tracing): void {
  const { tracer } = tracing;
  const parent = tracing.extract({ traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" });
  const gateway = tracer.startSpan("text_completion", { kind: SpanKind.SERVER, attributes: { "gen_ai.operation.name": "text_completion", "gen_ai.response.id": "cmpl-1" } }, parent);
  gateway.updateName("text_completion stories260K");
  gateway.setAttribute("gen_ai.request.model", "stories260K");
  gateway.setAttribute("gen_ai.request.max_tokens", 2);
  const headers = tracing.inject(trace.setSpan(parent, gateway));
  const workerParent = tracing.extract(headers);
  const worker = tracer.startSpan("generate stories260K", { kind: SpanKind.SERVER, attributes: { "gen_ai.request.model": "stories260K", "smmf.instance.id": "i-1", "smmf.worker.id": "w-1" } }, workerParent);
  const engine = tracer.startSpan("engine llama.cpp", { kind: SpanKind.INTERNAL, attributes: { "smmf.engine": "llama.cpp", "gen_ai.request.model": "stories260K" } }, trace.setSpan(workerParent, worker));
  engine.setAttributes({ "gen_ai.usage.input_tokens": 2, "gen_ai.usage.output_tokens": 2, "gen_ai.response.finish_reasons": ["length"] });
  engine.end();
  worker.end();
  gateway.setAttributes({ "smmf.instance.id": "i-1", "smmf.worker.id": "w-1", "smmf.engine": "llama.cpp", "server.address": "127.0.0.1:1" });
  gateway.setAttributes({ "smmf.retries": 0, "http.response.status_code": 200, "gen_ai.usage.input_tokens": 2, "gen_ai.usage.output_tokens": 2 });
  gateway.setAttribute("gen_ai.response.finish_reasons", ["length"]);
  gateway.end();
}

export async function benchTracer(): Promise<void> {
  const writer = new ByteWriter();
  const handOver = await Tracing.create({
    serviceName: "bench",
    sink: (span) => {
      encodeSpan(writer, span);
      if (writer.length > 1_000_000) writer.take();
    },
  });
  const sides = { "OpenTelemetry SDK": await sdkTracing(), "SMMF recording tracer": await Tracing.create({ serviceName: "bench", sink: () => undefined }), "  + encoded for the thread": handOver };
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(sides).map((k) => [k, []]));
  for (let block = 0; block < BLOCKS; block++) {
    for (const [name, tracing] of Object.entries(sides)) {
      const started = performance.now();
      for (let i = 0; i < PER_BLOCK; i++) oneRequest(tracing);
      if (block >= 2) times[name].push(((performance.now() - started) * 1000) / PER_BLOCK); // the first blocks warm up
    }
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  console.log("\nTracing one request's three spans (gateway, worker, engine; trace context injected and extracted), per request:");
  for (const [name, t] of Object.entries(times)) console.log(`  ${name.padEnd(28)}${median(t).toFixed(1).padStart(7)} µs`);
  const [sdk, ours] = Object.values(times).map(median);
  console.log(`  recording tracer / SDK: ${(ours / sdk).toFixed(2)}`);
}
