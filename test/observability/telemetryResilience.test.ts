import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/distCluster.js";
import { startOtlpCollector, type OtlpCollector } from "../helpers/otlpCollector.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// Issue 14: no request can break the parts every request shares. One embedded server with the request log
// and traces (to a loopback OTLP collector) on; requests that once broke the telemetry thread, then the
// thread killed outright, then an instance unloaded.
const MODEL = "stories260K";
let dir: string;
let server: TestServer;
let collector: OtlpCollector;

interface Logged {
  id: string;
  status: number;
  instance: string | null;
  traceId: string | null;
}

async function requests(): Promise<{ status: number; data: Logged[] }> {
  const res = await fetch(`${server.url}/api/v1/requests?limit=100`);
  return { status: res.status, data: res.ok ? ((await res.json()) as { data: Logged[] }).data : [] };
}

async function metrics() {
  return promSamples(await (await fetch(`${server.url}/metrics`)).text());
}

/** A chat completion through the gateway; its request id. */
async function chat(): Promise<string> {
  const { response } = await server.openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 }).withResponse();
  return response.headers.get("x-request-id")!;
}

/** Waits for the gateway span of request `id` at the collector. */
function gatewaySpanOf(id: string) {
  return waitFor(`the span of ${id} at the collector`, () => collector.spans().find((s) => s.attributes.some((a) => a.key === "gen_ai.response.id" && a.value.stringValue === id)), 10_000);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "smmf-resilience-"));
  collector = await startOtlpCollector();
  server = await startTestServer({ requestLog: "on", requestLogCapture: "full", dataDir: dir, otlpEndpoint: collector.url });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await collector?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("no request can break the telemetry thread", () => {
  it("a chat with `stop` nested 100,000 deep gets a 4xx; the request log and traces go on working", async () => {
    const post = async (body: string) => {
      const res = await fetch(`${server.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body });
      await res.text();
      return { status: res.status, id: res.headers.get("x-request-id")! };
    };
    const chatBody = (stop: string, content = "Hi") => `{"model":"${MODEL}","messages":[{"role":"user","content":"${content}"}],"max_tokens":2,"stop":${stop}}`;
    const nestedStop = (depth: number) => `${"[".repeat(depth)}"x"${"]".repeat(depth)}`;
    // 100,000 deep (what once killed the telemetry thread), and 60 deep (within what the body parser takes,
    // refused by the check of `stop`): both the client's fault.
    const deep = await post(chatBody(nestedStop(100_000)));
    const shallower = await post(chatBody(nestedStop(60)));
    // Lone surrogates (as JSON escapes) in the prompt: answered, logged and traced.
    const odd = await post(chatBody(`["."]`, "lone \\udc00 half \\ud800"));
    for (const r of [deep, shallower]) {
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
    }
    expect(odd.status).toBe(200);

    // Afterwards: requests are answered, logged and traced.
    const okId = await chat();
    const ids = [deep.id, shallower.id, odd.id, okId];
    const logged = await waitFor("the four requests in the log", async () => {
      const { status, data } = await requests();
      expect(status).toBe(200);
      return ids.every((id) => data.some((e) => e.id === id)) ? data : undefined;
    }, 10_000);
    expect(logged.find((e) => e.id === deep.id)!.status).toBe(deep.status);
    expect(logged.find((e) => e.id === shallower.id)!.status).toBe(shallower.status);
    for (const id of [odd.id, okId]) expect((await gatewaySpanOf(id)).traceId).toBe(logged.find((e) => e.id === id)!.traceId);

    const samples = await metrics();
    expect(promValue(samples, "smmf_telemetry_dropped_total")).toBe(0);
    expect(samples.filter((s) => s.name === "smmf_telemetry_dropped_total").map((s) => `${s.labels.record}/${s.labels.reason}`).sort()).toEqual(
      ["entry/encode", "entry/queue_full", "entry/thread_down", "entry/write", "span/encode", "span/queue_full", "span/thread_down"],
    );
    expect(promValue(samples, "smmf_telemetry_restarts_total")).toBe(0);
    expect(server.embedded.telemetry.thread!.restarts).toBe(0);
  });

  it("a telemetry thread that dies is started again: the request log answers and traces flow, the restart counted", async () => {
    const thread = server.embedded.telemetry.thread!;
    const before = (await requests()).data.length;
    const up = once(thread, "up");
    await thread.failForTesting("terminate");
    await up;

    const { status, data } = await requests();
    expect(status).toBe(200);
    expect(data.length).toBe(before);
    const id = await chat();
    await waitFor("the new request in the log", async () => (await requests()).data.some((e) => e.id === id), 10_000);
    await gatewaySpanOf(id);
    expect(promValue(await metrics(), "smmf_telemetry_restarts_total")).toBe(1);
  });
});

describe("metric series of removed instances", () => {
  it("the series of an unloaded instance are gone from /metrics", async () => {
    const id = await chat();
    const { data } = await requests();
    const instance = data.find((e) => e.id === id)!.instance!;
    expect(instance).toMatch(/^stories260K-/);
    const seriesOf = (samples: Awaited<ReturnType<typeof metrics>>) => samples.filter((s) => s.labels.instance === instance).map((s) => s.name);
    expect(seriesOf(await metrics())).toContain("smmf_worker_generations_total");

    await server.embedded.worker.worker.unload(instance);
    expect(server.embedded.registry.snapshot().some((i) => i.instanceId === instance)).toBe(false);
    expect(seriesOf(await metrics())).toEqual([]);
  });
});
