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
});
