import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenerateRequestSchema, InferenceService, type GenerateRequest } from "../../src/gen/smmf/v1/inference_pb.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// The gateway's gRPC InferenceService is observed like its REST API: metrics, request log, request id.
let dir: string;
let server: TestServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "smmf-grpc-obs-"));
  server = await startTestServer({ requestLog: "on", requestLogCapture: "full", dataDir: dir });
}, 60_000);

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function* start(model: string, maxTokens: number): AsyncIterable<GenerateRequest> {
  yield create(GenerateRequestSchema, { kind: { case: "start", value: { model, input: { case: "prompt", value: "Once upon a time" }, params: { maxTokens, temperature: 0 } } } });
}

describe("the gateway's gRPC InferenceService, observed", () => {
  it("logs and counts Generate and Embed calls, errors included, and names each call in its x-request-id header", async () => {
    const client = createClient(InferenceService, createGrpcTransport({ baseUrl: server.url }));
    let requestId = "";
    let tokens = 0;
    for await (const res of client.generate(start("stories260K", 6), { onHeader: (h) => (requestId = h.get("x-request-id") ?? "") })) {
      if (res.kind.case === "delta") tokens += res.kind.value.pieces.length;
    }
    expect(tokens).toBe(6);
    expect(requestId).toMatch(/^grpc-/);
    const embedded = await client.embed({ model: "stories260K", inputs: ["a cat"] });
    expect(embedded.embeddings).toHaveLength(1);
    const err = await (async () => {
      for await (const _ of client.generate(start("no-such-model", 2))) void _;
    })().catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.NotFound });

    const log = (await (await fetch(`${server.url}/api/v1/requests`)).json()) as { data: Record<string, unknown>[] };
    expect(log.data.map((r) => [r.endpoint, r.status])).toEqual([
      ["grpc_generate", 404],
      ["grpc_embed", 200],
      ["grpc_generate", 200],
    ]);
    expect(log.data[2]).toMatchObject({ id: requestId, model: "stories260K", completionTokens: 6, prompt: "Once upon a time", params: { maxTokens: 6 } });
    expect((log.data[2].output as string).length).toBeGreaterThan(0);
    const samples = promSamples(await (await fetch(`${server.url}/metrics`)).text());
    expect(promValue(samples, "smmf_gateway_requests_total", { endpoint: "grpc_generate", model: "stories260K", status: "200" })).toBe(1);
    expect(promValue(samples, "smmf_gateway_requests_total", { endpoint: "grpc_generate", model: "unknown", status: "404" })).toBe(1);
    expect(promValue(samples, "smmf_gateway_requests_total", { endpoint: "grpc_embed", status: "200" })).toBe(1);
    expect(promValue(samples, "smmf_gateway_completion_tokens_total", { model: "stories260K" })).toBe(6);
  });

  it("names every call itself: a caller's request_id is kept beside it and cannot overwrite another caller's row or its feedback", async () => {
    const client = createClient(InferenceService, createGrpcTransport({ baseUrl: server.url }));
    const ids: string[] = [];
    async function* withId(): AsyncIterable<GenerateRequest> {
      yield create(GenerateRequestSchema, { kind: { case: "start", value: { model: "stories260K", requestId: "mine", input: { case: "prompt", value: "Once upon a time" }, params: { maxTokens: 2, temperature: 0 } } } });
    }
    for (let i = 0; i < 2; i++) {
      for await (const _ of client.generate(withId(), { onHeader: (h) => void ids.push(h.get("x-request-id") ?? "") })) void _;
      if (i === 0) {
        // The first caller gives feedback on its request.
        await expect.poll(async () => (await fetch(`${server.url}/api/v1/requests/${ids[0]}`)).status, { timeout: 5_000 }).toBe(200);
        const fb = await fetch(`${server.url}/api/v1/requests/${ids[0]}/feedback`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ score: 1 }) });
        expect(fb.status).toBe(200);
      }
    }
    expect(ids[0]).toMatch(/^grpc-/);
    expect(ids[1]).not.toBe(ids[0]);
    await expect.poll(async () => (await fetch(`${server.url}/api/v1/requests/${ids[1]}`)).status, { timeout: 5_000 }).toBe(200);
    const first = (await (await fetch(`${server.url}/api/v1/requests/${ids[0]}`)).json()) as { clientRequestId: string; feedback: { score: number } | null };
    const second = (await (await fetch(`${server.url}/api/v1/requests/${ids[1]}`)).json()) as { clientRequestId: string; feedback: unknown };
    expect(first).toMatchObject({ clientRequestId: "mine", feedback: { score: 1 } });
    expect(second).toMatchObject({ clientRequestId: "mine", feedback: null });
  });
});
