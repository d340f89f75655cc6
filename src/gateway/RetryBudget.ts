/**
 * Retries allowed over a sliding window: at least `minPerWindow`, plus `ratio` of the requests seen, so that
 * retries cannot multiply the load of an outage.
 */
export class RetryBudget {
  private readonly buckets: { at: number; requests: number; retries: number }[] = [];

  constructor(
    private readonly ratio = 0.2,
    private readonly minPerWindow = 20,
    private readonly windowMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  recordRequest(): void {
    this.bucket().requests++;
  }

  /** Takes one retry from the budget; false when it is spent. */
  tryRetry(): boolean {
    let requests = 0;
    let retries = 0;
    this.bucket();
    for (const b of this.buckets) {
      requests += b.requests;
      retries += b.retries;
    }
    if (retries >= this.minPerWindow + this.ratio * requests) return false;
    this.bucket().retries++;
    return true;
  }

  private bucket() {
    const second = Math.floor(this.now() / 1000) * 1000;
    while (this.buckets.length > 0 && this.buckets[0].at <= second - this.windowMs) this.buckets.shift();
    let last = this.buckets[this.buckets.length - 1];
    if (!last || last.at !== second) {
      last = { at: second, requests: 0, retries: 0 };
      this.buckets.push(last);
    }
    return last;
  }
}
