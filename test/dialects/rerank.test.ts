import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InferenceService, RerankMethod } from "../../src/gen/smmf/v1/inference_pb.js";
import { startScriptedUpstream, type ScriptedUpstream } from "../helpers/scriptedUpstream.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// POST /v1/rerank: on llama.cpp for a model without a ranking head (the test model), the documented fallback,
// embedding similarity; on an upstream, its own rerank endpoint.

let server: TestServer;
let up: ScriptedUpstream;

beforeAll(async () => {
  up = await startScriptedUpstream();
  // The relay's load probes the upstream's embeddings once.
  up.script((r) => (r.path.endsWith("/embeddings") ? { body: { data: [{ index: 0, embedding: [0.1, 0.2] }], usage: { prompt_tokens: 1 } } } : { body: {} }));
  server = await startTestServer({ models: [{ name: "stories260K", file: (await import("../helpers/testModel.js")).testModelPath() }, { name: "ranker", engine: "openai-compatible", file: "", baseUrl: up.url, upstreamModel: "up-ranker" }] });
}, 60_000);
afterAll(async () => {
  await server?.close();
  await up?.close();
});

const QUERY = "the cat sat on the mat";
const DOCUMENTS = ["the cat sat on the mat", "a dog ran in the park", "stocks fell sharply on monday", "the cat sat on a mat"];

async function rerank(body: object): Promise<{ status: number; headers: Headers; json: { results: { index: number; relevance_score: number; document?: { text: string } }[]; usage: { total_tokens: number }; error?: { code: string; param: string } } }> {
  const res = await fetch(`${server.url}/v1/rerank`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, json: (await res.json()) as never };
}

function cosine(a: number[], b: number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

describe("POST /v1/rerank", () => {
  it("a model without a ranking head ranks by embedding similarity, as documented: the scores are the cosines of its embeddings, highest first", async () => {
    const { status, headers, json } = await rerank({ model: "stories260K", query: QUERY, documents: DOCUMENTS });
    expect(status).toBe(200);
    expect(headers.get("x-smmf-rerank-method")).toBe("embedding_similarity");
    expect(json.results.map((r) => r.index).sort()).toEqual([0, 1, 2, 3]);
    const scores = json.results.map((r) => r.relevance_score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    // The same scores from the model's embeddings, through /v1/embeddings.
    const embeddings = await server.openai.embeddings.create({ model: "stories260K", input: [QUERY, ...DOCUMENTS] });
    const [q, ...docs] = embeddings.data.map((d) => d.embedding);
    for (const r of json.results) expect(r.relevance_score).toBeCloseTo(cosine(q, docs[r.index]), 4);
    // The document identical to the query comes first.
    expect(json.results[0].index).toBe(0);
    expect(json.usage.total_tokens).toBeGreaterThan(0);
    // It went through the request log like an embedding.
    const id = headers.get("x-request-id")!;
    await expect.poll(async () => (await fetch(`${server.url}/api/v1/requests/${id}`)).status).toBe(200);
  });

  it("top_n keeps the best n; return_documents adds their text; documents may be {text} objects", async () => {
    const all = await rerank({ model: "stories260K", query: QUERY, documents: DOCUMENTS });
    const { json } = await rerank({ model: "stories260K", query: QUERY, documents: DOCUMENTS.map((text) => ({ text })), top_n: 2, return_documents: true });
    expect(json.results.length).toBe(2);
    expect(json.results.map((r) => r.index)).toEqual(all.json.results.slice(0, 2).map((r) => r.index));
    for (const r of json.results) expect(r.document).toEqual({ text: DOCUMENTS[r.index] });
    expect(all.json.results[0].document).toBeUndefined();
  });

  it("an upstream model is reranked by the upstream's own endpoint; its scores come back sorted", async () => {
    up.script((r) => (r.path.endsWith("/rerank") ? { body: { results: [{ index: 0, relevance_score: 0.1 }, { index: 2, relevance_score: 0.9 }, { index: 1, relevance_score: 0.5 }], usage: { total_tokens: 42 } } } : { body: {} }));
    const { status, headers, json } = await rerank({ model: "ranker", query: "q", documents: ["a", "b", "c"], top_n: 2 });
    expect(status).toBe(200);
    expect(headers.get("x-smmf-rerank-method")).toBe("upstream");
    expect(json.results).toEqual([{ index: 2, relevance_score: 0.9 }, { index: 1, relevance_score: 0.5 }]);
    expect(json.usage.total_tokens).toBe(42);
    expect(up.last()).toMatchObject({ path: "/v1/rerank", body: { model: "up-ranker", query: "q", documents: ["a", "b", "c"] } });
    // An upstream that answers in another shape is an upstream failure, not a wrong ranking.
    up.script({ body: { results: [{ index: 7, relevance_score: 1 }] } });
    expect((await rerank({ model: "ranker", query: "q", documents: ["a"] })).status).toBe(503);
  });

  it("over gRPC, InferenceService.Rerank gives a score per document, in the documents' order, and how they were made", async () => {
    const client = createClient(InferenceService, createGrpcTransport({ baseUrl: server.url }));
    const res = await client.rerank({ model: "stories260K", query: QUERY, documents: DOCUMENTS });
    expect(res.scores.length).toBe(DOCUMENTS.length);
    expect(res.method).toBe(RerankMethod.EMBEDDING_SIMILARITY);
    const rest = await rerank({ model: "stories260K", query: QUERY, documents: DOCUMENTS });
    for (const r of rest.json.results) expect(res.scores[r.index]).toBeCloseTo(r.relevance_score, 6);
  });

  it("bad input is refused in OpenAI's error shape: no documents, no query, a wrong document, an unknown model", async () => {
    const cases: [object, string][] = [
      [{ model: "stories260K", query: QUERY, documents: [] }, "documents"],
      [{ model: "stories260K", documents: DOCUMENTS }, "query"],
      [{ model: "stories260K", query: QUERY, documents: [1] }, "documents[0]"],
      [{ model: "stories260K", query: QUERY, documents: DOCUMENTS, top_n: 0 }, "top_n"],
      [{ model: "stories260K", query: QUERY, documents: DOCUMENTS, frobnicate: 1 }, "frobnicate"],
    ];
    for (const [body, param] of cases) {
      const r = await rerank(body);
      expect(r.status, param).toBe(400);
      expect(r.json.error?.param, param).toBe(param);
    }
    const unknown = await rerank({ model: "nope", query: QUERY, documents: DOCUMENTS });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error?.code).toBe("model_not_found");
  });
});
