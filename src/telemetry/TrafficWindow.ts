/** One gateway's traffic, second by second, as `GET /api/v1/traffic` gives it (the console's charts). */
export interface TrafficSeries {
  /** Unix seconds of the first value; one value a second after it. */
  start: number;
  interval: 1;
  /** Requests answered in each second. */
  requests: number[];
  /** Of them, answered with 429 or 5xx: what the service failed or refused (not a client's bad request, nor one that went away). */
  errors: number[];
  /** Completion tokens sent in each second. */
  tokens: number[];
  /** Mean time to first token of the requests that streamed one in that second (ms); null where none did. */
  ttftMs: (number | null)[];
}

/**
 * The last `seconds` of one process's traffic in per-second slots of a ring (requests, errors, completion
 * tokens, TTFT). Recording a request writes four numbers and allocates nothing; a slot is cleared when its
 * second comes round again.
 */
export class TrafficWindow {
  private readonly second: Float64Array;
  private readonly requests: Float64Array;
  private readonly errors: Float64Array;
  private readonly tokens: Float64Array;
  private readonly ttftSum: Float64Array;
  private readonly ttftCount: Float64Array;

  constructor(
    readonly seconds = 600,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.second = new Float64Array(seconds).fill(-1);
    this.requests = new Float64Array(seconds);
    this.errors = new Float64Array(seconds);
    this.tokens = new Float64Array(seconds);
    this.ttftSum = new Float64Array(seconds);
    this.ttftCount = new Float64Array(seconds);
  }

  /** A request answered with `status`, having sent `completionTokens`, its first after `ttftMs` (undefined: none). */
  record(status: number, completionTokens: number, ttftMs: number | undefined): void {
    const i = this.slot(Math.floor(this.nowMs() / 1000));
    this.requests[i]++;
    if (status === 429 || status >= 500) this.errors[i]++;
    this.tokens[i] += completionTokens;
    if (ttftMs !== undefined) {
      this.ttftSum[i] += ttftMs;
      this.ttftCount[i]++;
    }
  }

  /** The last `last` whole seconds (the one under way is left out: it is not over), oldest first. */
  series(last = this.seconds): TrafficSeries {
    const n = Math.max(1, Math.min(this.seconds, Math.floor(last)));
    const end = Math.floor(this.nowMs() / 1000) - 1;
    const out: TrafficSeries = { start: end - n + 1, interval: 1, requests: [], errors: [], tokens: [], ttftMs: [] };
    for (let s = end - n + 1; s <= end; s++) {
      const i = ((s % this.seconds) + this.seconds) % this.seconds;
      const held = this.second[i] === s;
      out.requests.push(held ? this.requests[i] : 0);
      out.errors.push(held ? this.errors[i] : 0);
      out.tokens.push(held ? this.tokens[i] : 0);
      out.ttftMs.push(held && this.ttftCount[i] > 0 ? Math.round((this.ttftSum[i] / this.ttftCount[i]) * 100) / 100 : null);
    }
    return out;
  }

  private slot(s: number): number {
    const i = s % this.seconds;
    if (this.second[i] !== s) {
      this.second[i] = s;
      this.requests[i] = 0;
      this.errors[i] = 0;
      this.tokens[i] = 0;
      this.ttftSum[i] = 0;
      this.ttftCount[i] = 0;
    }
    return i;
  }
}
