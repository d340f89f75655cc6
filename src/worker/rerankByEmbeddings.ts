import type { EngineInstance } from "../engines/Engine.js";

/** The cosine similarity of two vectors (0 when either is all zeros). */
export function cosineSimilarity(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

/**
 * Rerank for a model without a ranking head: each document's score is the cosine similarity of its embedding
 * and the query's (in -1..1; higher is more relevant). Documented as such, and named in the answer
 * (`x-smmf-rerank-method: embedding_similarity`): a chat model's embeddings rank far worse than a reranker.
 */
export async function rerankByEmbeddings(engine: EngineInstance, query: string, documents: string[], signal: AbortSignal): Promise<{ scores: number[]; promptTokens: number }> {
  const { vectors, promptTokens } = await engine.embed([query, ...documents], signal);
  const [q, ...docs] = vectors;
  return { scores: docs.map((d) => cosineSimilarity(q, d)), promptTokens };
}
