import type { Token } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { sampleFromProbabilities, seededRandom, type JsSampling } from "./sampleFromProbabilities.js";

const T = (n: number) => n as Token;

/** A distribution over tokens 0, 1, 2, … with these probabilities, in this order (most likely first). */
function dist(...ps: number[]): Map<Token, number> {
  return new Map(ps.map((p, i) => [T(i), p]));
}

const noCounts = new Map<Token, number>();
const fixed = (r: number) => () => r;
const never = () => {
  throw new Error("random() must not be called");
};

/** How often each token is drawn in `draws` tries, seeded. */
function frequencies(probabilities: Map<Token, number>, options: JsSampling, draws = 20_000, seed = 7): number[] {
  const random = seededRandom(seed);
  const seen = new Array<number>(probabilities.size).fill(0);
  for (let i = 0; i < draws; i++) seen[sampleFromProbabilities(probabilities, options, noCounts, random)]++;
  return seen.map((n) => n / draws);
}

describe("seededRandom", () => {
  it("gives the same draws for the same seed, other draws for another seed", () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const c = seededRandom(43);
    const as = Array.from({ length: 20 }, a);
    expect(Array.from({ length: 20 }, b)).toEqual(as);
    expect(Array.from({ length: 20 }, c)).not.toEqual(as);
  });

  it("draws in [0, 1), spread evenly", () => {
    const random = seededRandom(0);
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < 10_000; i++) {
      const r = random();
      expect(r).toBeGreaterThanOrEqual(0);
      expect(r).toBeLessThan(1);
      buckets[Math.floor(r * 10)]++;
    }
    for (const n of buckets) expect(n).toBeGreaterThan(850);
  });

  it("without a seed is Math.random", () => {
    expect(seededRandom(undefined)).toBe(Math.random);
  });
});

describe("sampleFromProbabilities", () => {
  it("takes the most likely token at temperature 0 and by default, without drawing", () => {
    expect(sampleFromProbabilities(dist(0.5, 0.3, 0.2), { temperature: 0 }, noCounts, never)).toBe(0);
    expect(sampleFromProbabilities(dist(0.5, 0.3, 0.2), {}, noCounts, never)).toBe(0);
    const reordered = new Map<Token, number>([[T(9), 0.7], [T(3), 0.3]]);
    expect(sampleFromProbabilities(reordered, {}, noCounts, never)).toBe(9);
  });

  it("draws in proportion to the probabilities at temperature 1 with no cut-offs", () => {
    const f = frequencies(dist(0.7, 0.2, 0.1), { temperature: 1, topK: 0, topP: 1 });
    expect(f[0]).toBeCloseTo(0.7, 1);
    expect(f[1]).toBeCloseTo(0.2, 1);
    expect(f[2]).toBeCloseTo(0.1, 1);
  });

  it("is reproducible with the same seed", () => {
    const draw = (seed: number) => {
      const random = seededRandom(seed);
      return Array.from({ length: 50 }, () => sampleFromProbabilities(dist(0.4, 0.3, 0.2, 0.1), { temperature: 1, topP: 1 }, noCounts, random));
    };
    expect(draw(5)).toEqual(draw(5));
    expect(new Set(draw(5)).size).toBeGreaterThan(1);
  });

  it("never picks a token of probability 0, and falls back to the first when all are 0", () => {
    const f = frequencies(dist(0.5, 0.5, 0, 0), { temperature: 2, topK: 0, topP: 1 }, 2000);
    expect(f[2] + f[3]).toBe(0);
    expect(sampleFromProbabilities(dist(0.5, 0.5, 0, 0), { temperature: 1, topK: 0, topP: 1 }, noCounts, fixed(0.999999))).toBe(1);
    expect(sampleFromProbabilities(new Map([[T(4), 0], [T(5), 0]]), { temperature: 1 }, noCounts, fixed(0.5))).toBe(4);
  });

  it("temperature sharpens below 1 and flattens above it", () => {
    const p = dist(0.6, 0.4);
    const opts = { topK: 0, topP: 1 };
    // At temperature 1 the first token takes draws below 0.6.
    expect(sampleFromProbabilities(p, { ...opts, temperature: 1 }, noCounts, fixed(0.58))).toBe(0);
    expect(sampleFromProbabilities(p, { ...opts, temperature: 1 }, noCounts, fixed(0.62))).toBe(1);
    // At 0.1 it takes nearly all (0.6^10 : 0.4^10 ≈ 0.983).
    expect(sampleFromProbabilities(p, { ...opts, temperature: 0.1 }, noCounts, fixed(0.97))).toBe(0);
    // At 2 the split is about 0.55 : 0.45.
    expect(sampleFromProbabilities(p, { ...opts, temperature: 2 }, noCounts, fixed(0.58))).toBe(1);
  });

  it("top-k keeps the k most likely (40 by default)", () => {
    const flat = dist(...new Array<number>(50).fill(0.02));
    expect(sampleFromProbabilities(flat, { temperature: 1, topP: 1 }, noCounts, fixed(0.9999))).toBe(39);
    expect(sampleFromProbabilities(flat, { temperature: 1, topP: 1, topK: 0 }, noCounts, fixed(0.9999))).toBe(49);
    expect(sampleFromProbabilities(flat, { temperature: 1, topP: 1, topK: 3 }, noCounts, fixed(0.9999))).toBe(2);
    const f = frequencies(dist(0.5, 0.3, 0.2), { temperature: 1, topP: 1, topK: 2 }, 2000);
    expect(f[2]).toBe(0);
    expect(f[0]).toBeCloseTo(0.5 / 0.8, 1);
  });

  it("top-p keeps the smallest head whose mass reaches p (0.95 by default)", () => {
    const p = dist(0.6, 0.3, 0.06, 0.04);
    // 0.6 + 0.3 + 0.06 ≥ 0.95: the fourth token is cut by default, kept with top_p 1.
    expect(sampleFromProbabilities(p, { temperature: 1, topK: 0 }, noCounts, fixed(0.99999))).toBe(2);
    expect(sampleFromProbabilities(p, { temperature: 1, topK: 0, topP: 1 }, noCounts, fixed(0.99999))).toBe(3);
    expect(sampleFromProbabilities(p, { temperature: 1, topK: 0, topP: 0.75 }, noCounts, fixed(0.99999))).toBe(1);
    expect(sampleFromProbabilities(p, { temperature: 1, topK: 0, topP: 0.5 }, noCounts, fixed(0.99999))).toBe(0);
    const f = frequencies(p, { temperature: 1, topK: 0, topP: 0.75 }, 2000);
    expect(f[2] + f[3]).toBe(0);
    expect(f[0]).toBeCloseTo(0.6 / 0.9, 1);
  });

  it("min-p drops tokens below min_p times the most likely one", () => {
    const p = dist(0.5, 0.3, 0.2);
    const opts = { temperature: 1, topK: 0, topP: 1 };
    expect(sampleFromProbabilities(p, { ...opts, minP: 0.5 }, noCounts, fixed(0.99999))).toBe(1);
    expect(sampleFromProbabilities(p, { ...opts, minP: 0.7 }, noCounts, fixed(0.99999))).toBe(0);
    expect(sampleFromProbabilities(p, { ...opts, minP: 0.3 }, noCounts, fixed(0.99999))).toBe(2);
  });

  it("frequency penalty scales with a token's count; presence penalty does not", () => {
    const p = dist(0.6, 0.4);
    const counts = new Map([[T(0), 3]]);
    // ln 0.6 − 3·0.1 > ln 0.4, but ln 0.6 − 3·0.2 < ln 0.4.
    expect(sampleFromProbabilities(p, { frequencyPenalty: 0.1 }, counts, never)).toBe(0);
    expect(sampleFromProbabilities(p, { frequencyPenalty: 0.2 }, counts, never)).toBe(1);
    // Presence subtracts once however often the token came: ln 0.6 − 0.3 > ln 0.4, ln 0.6 − 0.5 < ln 0.4.
    expect(sampleFromProbabilities(p, { presencePenalty: 0.3 }, counts, never)).toBe(0);
    expect(sampleFromProbabilities(p, { presencePenalty: 0.5 }, counts, never)).toBe(1);
    // Tokens not yet generated are not penalized.
    expect(sampleFromProbabilities(p, { frequencyPenalty: 2, presencePenalty: 2 }, new Map([[T(1), 1]]), never)).toBe(0);
  });

  it("a negative penalty favours tokens already generated", () => {
    expect(sampleFromProbabilities(dist(0.6, 0.4), { presencePenalty: -1 }, new Map([[T(1), 1]]), never)).toBe(1);
  });

  it("applies penalties before top-k", () => {
    const counts = new Map([[T(0), 1]]);
    // Without a count, top-k 1 keeps token 0; penalized, token 0 falls behind and top-k 1 keeps token 1.
    expect(sampleFromProbabilities(dist(0.5, 0.3, 0.2), { temperature: 1, topK: 1, frequencyPenalty: 2 }, noCounts, fixed(0.5))).toBe(0);
    const random = seededRandom(1);
    for (let i = 0; i < 200; i++) expect(sampleFromProbabilities(dist(0.5, 0.3, 0.2), { temperature: 1, topK: 1, frequencyPenalty: 2 }, counts, random)).toBe(1);
  });
});
