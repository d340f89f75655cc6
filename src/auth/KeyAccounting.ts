import type { ApiKey } from "../gen/smmf/v1/auth_pb.js";
import type { Metrics } from "../telemetry/Metrics.js";
import { KeyLimiter, rateLimitHeaders } from "./KeyLimiter.js";

/** Hears the tokens of an answered request. */
export type UsageListener = (promptTokens: number, completionTokens: number) => void;

/**
 * An API key's share of the gateway: each inference request is admitted by the key's limits (or refused with
 * 429), counted per key name on /metrics (`smmf_key_requests_total`, `smmf_key_tokens_total`), and its
 * tokens, once answered, count against the key's tokens per minute.
 */
export class KeyAccounting {
  constructor(
    private readonly limiter: KeyLimiter,
    private readonly metrics: Metrics,
  ) {}

  /**
   * Admits a request of `key` (null: keys are not enforced, nothing to do); sets the x-ratelimit-* headers
   * through `setHeader`. Returns the listener for the request's tokens.
   */
  admit(key: ApiKey | null, setHeader: (name: string, value: string) => void): UsageListener | undefined {
    if (!key) return undefined;
    let state;
    try {
      state = this.limiter.admit(key);
    } catch (err) {
      this.metrics.keyRequests.inc(1, key.name, "rate_limited");
      throw err;
    }
    this.metrics.keyRequests.inc(1, key.name, "admitted");
    if (state) for (const [name, value] of Object.entries(rateLimitHeaders(state))) setHeader(name, value);
    return (promptTokens, completionTokens) => {
      this.metrics.keyTokens.inc(promptTokens, key.name, "prompt");
      this.metrics.keyTokens.inc(completionTokens, key.name, "completion");
      this.limiter.addTokens(key, promptTokens + completionTokens);
    };
  }
}
