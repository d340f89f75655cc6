import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ApiKeyRole, ApiKeySchema } from "../gen/smmf/v1/auth_pb.js";
import { formatReset, KeyLimiter, rateLimitHeaders } from "./KeyLimiter.js";

const key = (rpm: number, tpm = 0, id = "k000000000001") => create(ApiKeySchema, { id, name: "app", role: ApiKeyRole.INFERENCE, rpm, tpm });
const T0 = 1_800_000_000_000;

function refusals(limiter: KeyLimiter, k: ReturnType<typeof key>, count: number, atMs: number): number {
  let refused = 0;
  for (let i = 0; i < count; i++) {
    try {
      limiter.admit(k, atMs);
    } catch (err) {
      expect(err).toMatchObject({ code: "rate_limit_exceeded", httpStatus: 429 });
      refused++;
    }
  }
  return refused;
}

describe("KeyLimiter", () => {
  it("admits exactly rpm requests in a minute, then 429 with Retry-After until the oldest leaves the window", () => {
    const limiter = new KeyLimiter();
    const k = key(10);
    expect(refusals(limiter, k, 15, T0)).toBe(5);
    const err = (() => {
      try {
        limiter.admit(k, T0 + 20_000);
      } catch (e) {
        return e as { retryAfterSeconds: number; message: string };
      }
    })();
    expect(err?.retryAfterSeconds).toBe(40);
    expect(err?.message).toMatch(/'app': 10 requests per minute/);
    // Sliding: the first ten leave the window 60 s after they came.
    expect(refusals(limiter, k, 10, T0 + 59_999)).toBe(10);
    expect(refusals(limiter, k, 12, T0 + 60_000)).toBe(2);
  });

  it("reports the limit, what remains and when it resets, as OpenAI's headers", () => {
    const limiter = new KeyLimiter();
    const k = key(3, 1000);
    limiter.admit(k, T0);
    limiter.addTokens(k, 400, T0);
    const state = limiter.admit(k, T0 + 5_000)!;
    expect(rateLimitHeaders(state)).toEqual({
      "x-ratelimit-limit-requests": "3",
      "x-ratelimit-remaining-requests": "1",
      "x-ratelimit-reset-requests": "55s",
      "x-ratelimit-limit-tokens": "1000",
      "x-ratelimit-remaining-tokens": "600",
      "x-ratelimit-reset-tokens": "55s",
    });
    expect(formatReset(360)).toBe("6m0s");
  });

  it("refuses once the minute's tokens reach tpm, and admits again when they leave the window", () => {
    const limiter = new KeyLimiter();
    const k = key(0, 100);
    limiter.admit(k, T0);
    limiter.addTokens(k, 60, T0);
    limiter.admit(k, T0 + 1_000);
    limiter.addTokens(k, 60, T0 + 1_000);
    expect(() => limiter.admit(k, T0 + 2_000)).toThrow(/100 tokens per minute/);
    // A minute on, the first 60 have left the window; the second 60 still count.
    expect(limiter.admit(k, T0 + 60_500)?.remainingTokens).toBe(40);
    limiter.addTokens(k, 50, T0 + 60_500);
    expect(() => limiter.admit(k, T0 + 60_600)).toThrow(/tokens per minute/);
    expect(limiter.admit(k, T0 + 61_000)?.remainingTokens).toBe(50);
  });

  it("with N gateways admits a 1/N share on each (rounded up), and nothing for a key without limits", () => {
    let n = 2;
    const limiter = new KeyLimiter(() => n);
    expect(refusals(limiter, key(10, 0, "k000000000002"), 10, T0)).toBe(5);
    n = 3;
    expect(refusals(limiter, key(10, 0, "k000000000003"), 10, T0)).toBe(6);
    expect(limiter.admit(key(0), T0)).toBeUndefined();
  });
});
