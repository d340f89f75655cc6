import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { killAll, MODEL, startDistGateway, startDistWorker, waitFor, waitUntilReady, type DistGateway, type DistWorker } from "../helpers/distCluster.js";
import { startOtlpCollector, type OtlpCollector } from "../helpers/otlpCollector.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";

// `smmf gateway` and `smmf worker` as processes, both exporting to one loopback OTLP/HTTP collector: one
// request's spans arrive from both services in one trace, linked across the gRPC hop.
let etcd: TestEtcd;
let collector: OtlpCollector;
let worker: DistWorker;
let gateway: DistGateway;

beforeAll(async () => {
  [etcd, collector] = await Promise.all([startEtcd(), startOtlpCollector()]);
  worker = await startDistWorker(etcd, { workerId: "otlp-worker", extra: ["--otlp-endpoint", collector.url] });
  gateway = await startDistGateway(etcd, ["--otlp-endpoint", collector.url, "--request-log", "off"]);
  await waitUntilReady(gateway);
}, 90_000);

afterAll(async () => {
  await killAll(gateway, worker);
  await collector?.close();
  await etcd?.close();
});

describe("OTLP export", () => {
  it("sends one trace per request from the gateway and the worker processes, parent to child, under the client's traceparent", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const clientSpan = "00f067aa0ba902b7";
    const stream = await gateway.openai.chat.completions.create(
      { model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 4, stream: true },
      { headers: { traceparent: `00-${traceId}-${clientSpan}-01` } },
    );
    for await (const _ of stream);
    const spans = await waitFor("three spans at the collector", () => {
      const mine = collector.spans().filter((s) => s.traceId === traceId);
      return mine.length >= 3 ? mine : undefined;
    }, 10_000);
    expect(collector.requests.every((r) => r.path === "/v1/traces")).toBe(true);
    const byName = (name: string) => spans.find((s) => s.name === name) ?? expect.fail(`no span ${name} among ${spans.map((s) => s.name).join(", ")}`);
    const gatewaySpan = byName(`chat ${MODEL}`);
    const workerSpan = byName(`generate ${MODEL}`);
    const engineSpan = byName("engine llama.cpp");
    expect(spans).toHaveLength(3);
    expect(gatewaySpan).toMatchObject({ service: "smmf-gateway", parentSpanId: clientSpan, kind: 2 });
    expect(workerSpan).toMatchObject({ service: "smmf-worker", parentSpanId: gatewaySpan.spanId, kind: 2 });
    expect(engineSpan).toMatchObject({ service: "smmf-worker", parentSpanId: workerSpan.spanId, kind: 1 });
    expect(gatewaySpan.attributes).toContainEqual({ key: "gen_ai.usage.output_tokens", value: { intValue: 4 } });
    expect(gatewaySpan.attributes).toContainEqual({ key: "smmf.worker.id", value: { stringValue: "otlp-worker" } });
    // The worker's work lies within the gateway's span: both processes time spans on the monotonic clock from
    // their own time origin, which agree.
    expect(BigInt(workerSpan.startTimeUnixNano) >= BigInt(gatewaySpan.startTimeUnixNano)).toBe(true);
    expect(BigInt(workerSpan.endTimeUnixNano) <= BigInt(gatewaySpan.endTimeUnixNano)).toBe(true);
  });

  // README, Observability: "Sampling is OpenTelemetry's default, parent-based always-on: a client's
  // `traceparent` with flags `00` (not sampled) is carried on to the worker, but nothing is recorded for it."
  it("exports no span from the gateway or the worker for a request with flags 00, and the gateway, worker and engine spans for one with flags 01", async () => {
    // Only what arrives from here on counts (the test above has had its spans).
    const before = collector.spans().length;
    const unsampledTrace = "0af7651916cd43dd8448eb211c80319c";
    const sampledTrace = "5c0e2a7d9b1f4e3a8d6c4b2a09f8e7d6";
    const clientSpan = "00f067aa0ba902b7";

    // Flags 00: streamed and not, chat and completion; each request is answered as usual.
    const stream = await gateway.openai.chat.completions.create(
      { model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 4, stream: true },
      { headers: { traceparent: `00-${unsampledTrace}-${clientSpan}-00` } },
    );
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
    expect(streamed).not.toBe("");
    const completion = await gateway.openai.completions.create({ model: MODEL, prompt: "Once", max_tokens: 3 }, { headers: { traceparent: `00-${unsampledTrace}-${clientSpan}-00` } });
    expect(completion.usage?.completion_tokens).toBe(3);

    // Then flags 01. Each process hands its spans to the exporter in the order they end, so once this
    // request's spans have arrived from both processes, any span of the requests before it would have too.
    await gateway.openai.completions.create({ model: MODEL, prompt: "Once", max_tokens: 3 }, { headers: { traceparent: `00-${sampledTrace}-${clientSpan}-01` } });
    const sampled = await waitFor("the sampled request's three spans at the collector", () => {
      const mine = collector.spans().filter((s) => s.traceId === sampledTrace);
      return mine.length >= 3 ? mine : undefined;
    }, 15_000);
    expect(sampled.map((s) => `${s.service} ${s.name}`).sort()).toEqual([`smmf-gateway text_completion ${MODEL}`, "smmf-worker engine llama.cpp", `smmf-worker generate ${MODEL}`]);
    expect(sampled.find((s) => s.service === "smmf-gateway")?.parentSpanId).toBe(clientSpan);

    // Nothing else was exported: not in the unsampled trace, and not as a trace of its own (a worker that
    // lost the unsampled context on the way would start a sampled root span).
    const all = collector.spans().slice(before);
    expect(all.filter((s) => s.traceId === unsampledTrace)).toEqual([]);
    expect(all.map((s) => `${s.service} ${s.name} ${s.traceId}`).sort()).toEqual(sampled.map((s) => `${s.service} ${s.name} ${s.traceId}`).sort());
  });
});
