import type { ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { SmmfError } from "../errors/SmmfError.js";

const WINDOW_S = 60;

/** Counts over the last minute, in one-second buckets: a sliding window without a record per request. */
class MinuteWindow {
  private readonly buckets = new Float64Array(WINDOW_S);
  private second = 0;
  total = 0;

  /** Moves the window to `nowS` (whole seconds), dropping what fell out of it. */
  advance(nowS: number): void {
    if (nowS <= this.second) return;
    if (nowS - this.second >= WINDOW_S) {
      this.buckets.fill(0);
      this.total = 0;
    } else {
      for (let s = this.second + 1; s <= nowS; s++) {
        const i = s % WINDOW_S;
        this.total -= this.buckets[i];
        this.buckets[i] = 0;
      }
    }
    this.second = nowS;
  }

  add(amount: number): void {
    this.buckets[this.second % WINDOW_S] += amount;
    this.total += amount;
  }

  /** Seconds until the oldest count still in the window leaves it (0 when empty). */
  resetSeconds(): number {
    if (this.total <= 0) return 0;
    for (let age = WINDOW_S - 1; age >= 0; age--) if (this.buckets[(this.second - age + WINDOW_S * 2) % WINDOW_S] > 0) return WINDOW_S - age;
    return 0;
  }
}

interface KeyWindows {
  requests: MinuteWindow;
  tokens: MinuteWindow;
}

/** A key's limits as one request saw them, for OpenAI's x-ratelimit-* headers. */
export interface LimitState {
  limitRequests: number;
  remainingRequests: number;
  resetRequestsS: number;
  limitTokens: number;
  remainingTokens: number;
  resetTokensS: number;
}

/** OpenAI's duration format in rate-limit headers: "1s", "6m0s". */
export function formatReset(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${s % 60}s`;
}

/**
 * Per-key limits of requests and tokens (prompt + completion) per minute, over a sliding minute, on this
 * gateway. With N gateways (`shares()`), each admits ceil(limit / N), so the fleet admits at most the limit
 * (plus at most one per gateway from rounding up) — exactly the limit when the traffic is spread evenly, less
 * when one key's traffic goes to fewer gateways. Tokens are counted when an answer is done: a request is
 * admitted while the minute's tokens are under the limit, and its own tokens count for the requests after it.
 */
export class KeyLimiter {
  private readonly windows = new Map<string, KeyWindows>();

  constructor(private readonly shares: () => number = () => 1) {}

  private windowsOf(key: ApiKey, nowS: number): KeyWindows {
    let w = this.windows.get(key.id);
    if (!w) this.windows.set(key.id, (w = { requests: new MinuteWindow(), tokens: new MinuteWindow() }));
    w.requests.advance(nowS);
    w.tokens.advance(nowS);
    return w;
  }

  private share(limit: number): number {
    return Math.ceil(limit / Math.max(1, this.shares()));
  }

  /**
   * Admits one request of `key` now, or throws 429 `rate_limit_exceeded` (with Retry-After) when its requests
   * or tokens of the last minute are at the limit. Returns the state for the response headers; undefined when
   * the key has no limits.
   */
  admit(key: ApiKey, nowMs = Date.now()): LimitState | undefined {
    if (!key.rpm && !key.tpm) return undefined;
    const w = this.windowsOf(key, Math.floor(nowMs / 1000));
    const rpm = key.rpm ? this.share(key.rpm) : 0;
    const tpm = key.tpm ? this.share(key.tpm) : 0;
    if (rpm && w.requests.total >= rpm) {
      throw new SmmfError("rate_limit_exceeded", `Rate limit reached for API key '${key.name}': ${key.rpm} requests per minute. Retry later.`, { retryAfterSeconds: Math.max(1, w.requests.resetSeconds()) });
    }
    if (tpm && w.tokens.total >= tpm) {
      throw new SmmfError("rate_limit_exceeded", `Rate limit reached for API key '${key.name}': ${key.tpm} tokens per minute. Retry later.`, { retryAfterSeconds: Math.max(1, w.tokens.resetSeconds()) });
    }
    w.requests.add(1);
    return {
      limitRequests: key.rpm,
      remainingRequests: rpm ? Math.max(0, rpm - w.requests.total) : 0,
      resetRequestsS: w.requests.resetSeconds(),
      limitTokens: key.tpm,
      remainingTokens: tpm ? Math.max(0, tpm - w.tokens.total) : 0,
      resetTokensS: w.tokens.resetSeconds(),
    };
  }

  /** Counts the tokens of a finished answer against the key. */
  addTokens(key: ApiKey, tokens: number, nowMs = Date.now()): void {
    if (!key.tpm || tokens <= 0) return;
    this.windowsOf(key, Math.floor(nowMs / 1000)).tokens.add(tokens);
  }

  /** Drops the windows of keys no longer known. */
  retain(ids: ReadonlySet<string>): void {
    for (const id of this.windows.keys()) if (!ids.has(id)) this.windows.delete(id);
  }
}

/** OpenAI's rate-limit headers for a request admitted with `state`. */
export function rateLimitHeaders(state: LimitState): Record<string, string> {
  const h: Record<string, string> = {};
  if (state.limitRequests) {
    h["x-ratelimit-limit-requests"] = String(state.limitRequests);
    h["x-ratelimit-remaining-requests"] = String(state.remainingRequests);
    h["x-ratelimit-reset-requests"] = formatReset(state.resetRequestsS);
  }
  if (state.limitTokens) {
    h["x-ratelimit-limit-tokens"] = String(state.limitTokens);
    h["x-ratelimit-remaining-tokens"] = String(state.remainingTokens);
    h["x-ratelimit-reset-tokens"] = formatReset(state.resetTokensS);
  }
  return h;
}
