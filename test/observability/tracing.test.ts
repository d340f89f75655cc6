import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/config/loadConfig.js";
import { startEmbedded, type Embedded } from "../../src/embedded/startEmbedded.js";
import { createLogger } from "../../src/telemetry/createLogger.js";
import { Metrics } from "../../src/telemetry/Metrics.js";
import { Tracing } from "../../src/telemetry/Tracing.js";
import { waitFor } from "../helpers/distCluster.js";
import { testModelPath } from "../helpers/testModel.js";

// The embedded mode with an in-memory span exporter: gateway and worker spans land in one place.
const exporter = new InMemorySpanExporter();
let embedded: Embedded;
let openai: OpenAI;

beforeAll(async () => {
  const config = { ...DEFAULTS, port: 0, workerPort: 0, gpu: "off" as const, threads: 1, models: [{ name: "stories260K", file: testModelPath() }] };
  embedded = await startEmbedded(config, createLogger("warn", "tracing"), {
    telemetry: { enabled: true, metrics: new Metrics({ defaultMetrics: false }), tracing: await Tracing.create({ serviceName: "smmf-test", exporter }), capture: "off" },
  });
  openai = new OpenAI({ baseURL: `${embedded.gateway.url}/v1`, apiKey: "unused", maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await embedded?.close();
});

function byName(spans: ReadableSpan[], prefix: string): ReadableSpan {
  const span = spans.find((s) => s.name.startsWith(prefix));
  if (!span) throw new Error(`no span '${prefix}…' among ${spans.map((s) => s.name).join(", ")}`);
  return span;
}

describe("tracing", () => {
  it("one streaming chat request is one trace: gateway → worker → engine, parent to child, with GenAI attributes", async () => {
    exporter.reset();
    const stream = await openai.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "Hello" }], max_tokens: 6, temperature: 0.5, stream: true, stream_options: { include_usage: true } });
    let usage;
    let id = "";
    for await (const chunk of stream) {
      id = chunk.id;
      if (chunk.usage) usage = chunk.usage;
    }
    const spans = await waitFor("three spans", () => (exporter.getFinishedSpans().length >= 3 ? exporter.getFinishedSpans() : undefined), 5_000);
    expect(spans).toHaveLength(3);
    expect(new Set(spans.map((s) => s.spanContext().traceId)).size).toBe(1);
    const gateway = byName(spans, "chat stories260K");
    const worker = byName(spans, "generate stories260K");
    const engine = byName(spans, "engine llama.cpp");
    expect(gateway.kind).toBe(SpanKind.SERVER);
    expect(gateway.parentSpanContext).toBeUndefined();
    expect(worker.kind).toBe(SpanKind.SERVER);
    expect(worker.parentSpanContext?.spanId).toBe(gateway.spanContext().spanId);
    expect(engine.kind).toBe(SpanKind.INTERNAL);
    expect(engine.parentSpanContext?.spanId).toBe(worker.spanContext().spanId);
    expect(gateway.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.request.model": "stories260K",
      "gen_ai.request.max_tokens": 6,
      "gen_ai.request.temperature": 0.5,
      "gen_ai.response.id": id,
      "gen_ai.usage.input_tokens": usage!.prompt_tokens,
      "gen_ai.usage.output_tokens": 6,
      "gen_ai.response.finish_reasons": ["length"],
      "smmf.retries": 0,
      "smmf.engine": "llama.cpp",
      "http.response.status_code": 200,
    });
    expect(gateway.attributes["smmf.instance.id"]).toMatch(/^stories260K-/);
    expect(worker.attributes["smmf.instance.id"]).toBe(gateway.attributes["smmf.instance.id"]);
    expect(engine.attributes).toMatchObject({ "gen_ai.usage.output_tokens": 6, "gen_ai.response.finish_reasons": ["length"] });
    // Child spans lie within their parents.
    expect(worker.startTime[0] * 1e9 + worker.startTime[1]).toBeGreaterThanOrEqual(gateway.startTime[0] * 1e9 + gateway.startTime[1]);
    expect(embedded.telemetry.requestLog).toBeUndefined();
  });

  it("honours the client's traceparent: the gateway span is its child, in its trace", async () => {
    exporter.reset();
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parentId = "00f067aa0ba902b7";
    await openai.completions.create({ model: "stories260K", prompt: "Once", max_tokens: 2 }, { headers: { traceparent: `00-${traceId}-${parentId}-01` } });
    const spans = await waitFor("three spans", () => (exporter.getFinishedSpans().length >= 3 ? exporter.getFinishedSpans() : undefined), 5_000);
    const gateway = byName(spans, "text_completion stories260K");
    expect(gateway.spanContext().traceId).toBe(traceId);
    expect(gateway.parentSpanContext?.spanId).toBe(parentId);
    expect(spans.every((s) => s.spanContext().traceId === traceId)).toBe(true);
  });

  it("records nothing for a client's traceparent with flags 00 (not sampled), at the gateway or the worker in process", async () => {
    exporter.reset();
    const unsampled = "0af7651916cd43dd8448eb211c80319c";
    const sampled = "4bf92f3577b34da6a3ce929d0e0e4736";
    const stream = await openai.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 3, stream: true }, { headers: { traceparent: `00-${unsampled}-00f067aa0ba902b7-00` } });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text).not.toBe("");
    await openai.completions.create({ model: "stories260K", prompt: "Once", max_tokens: 2 }, { headers: { traceparent: `00-${unsampled}-00f067aa0ba902b7-00` } });
    // A sampled request after them: once its spans are in, any of theirs would be too (spans go out as they end).
    await openai.completions.create({ model: "stories260K", prompt: "Once", max_tokens: 2 }, { headers: { traceparent: `00-${sampled}-00f067aa0ba902b7-01` } });
    const spans = await waitFor("the sampled request's three spans", () => (exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === sampled).length >= 3 ? exporter.getFinishedSpans() : undefined), 5_000);
    expect(spans.map((s) => s.name).sort()).toEqual(["engine llama.cpp", "generate stories260K", "text_completion stories260K"]);
    expect(spans.every((s) => s.spanContext().traceId === sampled)).toBe(true);
  });

  it("marks a failed request's span as an error with its code", async () => {
    exporter.reset();
    await expect(openai.completions.create({ model: "nope", prompt: "x" })).rejects.toMatchObject({ status: 404 });
    const [span] = await waitFor("a span", () => (exporter.getFinishedSpans().length >= 1 ? exporter.getFinishedSpans() : undefined), 5_000);
    expect(span.name).toBe("text_completion nope");
    expect(span.status.code).toBe(2); // ERROR
    expect(span.attributes).toMatchObject({ "error.type": "model_not_found", "http.response.status_code": 404 });
  });
});
