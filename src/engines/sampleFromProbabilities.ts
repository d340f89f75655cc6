import type { Token } from "node-llama-cpp";

/** Sampling settings, with node-llama-cpp's defaults where unset. */
export interface JsSampling {
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
}

/** A seeded pseudo-random source (mulberry32): the same seed gives the same draws. */
export function seededRandom(seed: number | undefined): () => number {
  if (seed === undefined) return Math.random;
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Picks the next token from the model's own distribution (`probabilities`, most likely first, as
 * node-llama-cpp gives it with greedy settings), applying what llama.cpp's sampler chain applies, in its
 * order: frequency/presence penalties, top-k, top-p, min-p, temperature, then a draw. Temperature 0 (the
 * default) takes the most likely token. Used where the raw distribution must be seen (logprobs): llama.cpp
 * reports probabilities only after its sampler chain has changed them.
 */
export function sampleFromProbabilities(probabilities: ReadonlyMap<Token, number>, options: JsSampling, counts: ReadonlyMap<Token, number>, random: () => number): Token {
  const freq = options.frequencyPenalty ?? 0;
  const presence = options.presencePenalty ?? 0;
  const penalize = (freq !== 0 || presence !== 0) && counts.size > 0;
  let tokens: Token[] = [];
  let logits: number[] = [];
  for (const [token, p] of probabilities) {
    if (p <= 0) break;
    tokens.push(token);
    let logit = Math.log(p);
    if (penalize) {
      const n = counts.get(token) ?? 0;
      if (n > 0) logit -= n * freq + presence;
    }
    logits.push(logit);
  }
  if (tokens.length === 0) return probabilities.keys().next().value as Token;
  if (penalize) {
    // Penalties can reorder the candidates.
    const order = logits.map((_, i) => i).sort((a, b) => logits[b] - logits[a]);
    tokens = order.map((i) => tokens[i]);
    logits = order.map((i) => logits[i]);
  }
  const temperature = options.temperature ?? 0;
  if (temperature <= 0) return tokens[0];
  const topK = options.topK ?? 40;
  let n = topK > 0 ? Math.min(topK, tokens.length) : tokens.length;
  const softmax = (count: number, scale: number) => {
    const max = logits[0] / scale;
    const out = new Array<number>(count);
    let sum = 0;
    for (let i = 0; i < count; i++) sum += out[i] = Math.exp(logits[i] / scale - max);
    for (let i = 0; i < count; i++) out[i] /= sum;
    return out;
  };
  const topP = options.topP ?? 0.95;
  if (topP < 1) {
    const p = softmax(n, 1);
    let cumulative = 0;
    for (let i = 0; i < n; i++) {
      cumulative += p[i];
      if (cumulative >= topP) {
        n = i + 1;
        break;
      }
    }
  }
  const minP = options.minP ?? 0;
  if (minP > 0) {
    const p = softmax(n, 1);
    const floor = p[0] * minP;
    let kept = 1;
    while (kept < n && p[kept] >= floor) kept++;
    n = kept;
  }
  const p = softmax(n, temperature);
  let r = random();
  for (let i = 0; i < n; i++) {
    r -= p[i];
    if (r < 0) return tokens[i];
  }
  return tokens[n - 1];
}
