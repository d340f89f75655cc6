import { create } from "@bufbuild/protobuf";
import { RerankMethod, RerankRequestSchema, type RerankRequest, type RerankResponse } from "../gen/smmf/v1/inference_pb.js";
import { invalidField, optionalBoolean, optionalNumber, requiredString } from "./fields.js";
import { checkRerankInputs, DEFAULT_REQUEST_CAPS, type RequestCaps } from "./requestCaps.js";

/** A POST /v1/rerank request (the Cohere / Jina shape that vLLM and LiteLLM serve too). */
export interface RerankCall {
  request: RerankRequest;
  topN: number;
  returnDocuments: boolean;
}

const RERANK_FIELDS = new Set(["model", "query", "documents", "top_n", "return_documents", "max_chunks_per_doc", "rank_fields"]);

/** Method names, as the answer's `x-smmf-rerank-method` header gives them. */
export const RERANK_METHOD_NAMES: Record<number, string> = {
  [RerankMethod.RANKING]: "ranking",
  [RerankMethod.EMBEDDING_SIMILARITY]: "embedding_similarity",
  [RerankMethod.UPSTREAM]: "upstream",
};

export function parseRerankRequest(body: Record<string, unknown>, requestId: string, caps: RequestCaps = DEFAULT_REQUEST_CAPS): RerankCall {
  for (const name of Object.keys(body)) if (!RERANK_FIELDS.has(name) && body[name] !== undefined) throw invalidField(name, `Unknown parameter: '${name}'.`);
  const model = requiredString(body, "model");
  if (typeof body.query !== "string") throw invalidField("query", body.query === undefined ? "Missing required parameter: 'query'." : "'query' must be a string.");
  if (!Array.isArray(body.documents)) throw invalidField("documents", body.documents === undefined ? "Missing required parameter: 'documents'." : "'documents' must be an array.");
  const documents = body.documents.map((d, i) => {
    if (typeof d === "string") return d;
    if (typeof d === "object" && d !== null && typeof (d as { text?: unknown }).text === "string") return (d as { text: string }).text;
    throw invalidField(`documents[${i}]`, `'documents[${i}]' must be a string or an object with a string 'text'.`);
  });
  checkRerankInputs(body.query, documents, caps);
  const topN = optionalNumber(body, "top_n", { integer: true, min: 1 }) ?? documents.length;
  return { request: create(RerankRequestSchema, { model, query: body.query, documents, requestId }), topN: Math.min(topN, documents.length), returnDocuments: optionalBoolean(body, "return_documents") ?? false };
}

/** The answer: the top `top_n` documents by score, highest first (ties by index), with their index and score. */
export function rerankResponse(id: string, call: RerankCall, result: RerankResponse) {
  const order = result.scores.map((score, index) => ({ index, score })).sort((a, b) => b.score - a.score || a.index - b.index);
  return {
    id,
    model: call.request.model,
    results: order.slice(0, call.topN).map(({ index, score }) => ({ index, relevance_score: score, ...(call.returnDocuments ? { document: { text: call.request.documents[index] } } : {}) })),
    usage: { prompt_tokens: result.usage?.promptTokens ?? 0, total_tokens: result.usage?.promptTokens ?? 0 },
  };
}
