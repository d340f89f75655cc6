import { describe, expect, it } from "vitest";
import { RetryBudget } from "./RetryBudget.js";

function setup(ratio: number, minPerWindow: number, windowMs = 10_000) {
  const clock = { now: 5_000_000 }; // on a second boundary
  const budget = new RetryBudget(ratio, minPerWindow, windowMs, () => clock.now);
  const advance = (ms: number) => {
    clock.now += ms;
  };
  const requests = (n: number) => {
    for (let k = 0; k < n; k++) budget.recordRequest();
  };
  /** Takes retries until one is refused (at most `limit`); returns how many were allowed. */
  const drain = (limit = 10_000) => {
    let n = 0;
    while (n < limit && budget.tryRetry()) n++;
    return n;
  };
  return { clock, budget, advance, requests, drain };
}

describe("RetryBudget", () => {
  it("allows minPerWindow retries with no requests at all, then refuses", () => {
    const { budget, drain } = setup(0.2, 5);
    expect(drain()).toBe(5);
    expect(budget.tryRetry()).toBe(false);
    expect(budget.tryRetry()).toBe(false);
  });

  it("adds ratio × requests seen in the window to the minimum", () => {
    const { requests, drain } = setup(0.2, 5);
    requests(50);
    expect(drain()).toBe(15); // 5 + 0.2 × 50
  });

  it("rounds a fractional allowance up (retries < min + ratio × requests)", () => {
    const { requests, drain } = setup(0.5, 2);
    requests(3); // 2 + 1.5 = 3.5: retries 0, 1, 2, 3 are below it
    expect(drain()).toBe(4);
  });

  it("requests after the budget is spent make room again", () => {
    const { budget, requests, drain } = setup(0.25, 1);
    expect(drain()).toBe(1);
    expect(budget.tryRetry()).toBe(false);
    requests(4); // 1 + 0.25 × 4 = 2: room for one more
    expect(budget.tryRetry()).toBe(true);
    expect(budget.tryRetry()).toBe(false);
  });

  it("a ratio of 0 leaves only the minimum", () => {
    const { requests, drain } = setup(0, 3);
    requests(1_000);
    expect(drain()).toBe(3);
  });

  it("a minimum of 0 allows nothing before any request", () => {
    const { budget, requests, drain } = setup(0.1, 0);
    expect(budget.tryRetry()).toBe(false);
    requests(20);
    expect(drain()).toBe(2);
  });

  it("counts everything within the window, across seconds", () => {
    const { advance, requests, drain } = setup(0.5, 0);
    requests(4);
    advance(3_000);
    requests(4);
    advance(3_000);
    expect(drain()).toBe(4); // 0.5 × 8
    advance(3_900); // 9.9 s after the first requests: still in the window
    expect(drain()).toBe(0);
  });

  it("frees the budget as the window slides past spent retries", () => {
    const { budget, advance, drain } = setup(0.2, 3);
    expect(drain()).toBe(3);
    advance(9_999);
    expect(budget.tryRetry()).toBe(false);
    advance(1);
    expect(drain()).toBe(3);
  });

  it("frees retries second by second as their buckets leave the window", () => {
    const { advance, drain } = setup(0, 4);
    expect(drain(2)).toBe(2); // t = 0 s: 2 retries
    advance(5_000);
    expect(drain(2)).toBe(2); // t = 5 s: 2 more, the budget is spent
    expect(drain()).toBe(0);
    advance(5_000); // t = 10 s: the first two are out of the window
    expect(drain()).toBe(2);
    advance(4_999);
    expect(drain()).toBe(0);
    advance(1); // t = 15 s: the ones from 5 s are out too
    expect(drain()).toBe(2);
  });

  it("requests that leave the window stop counting", () => {
    const { advance, requests, drain } = setup(0.5, 0);
    requests(10);
    advance(10_000);
    expect(drain()).toBe(0);
    requests(2);
    expect(drain()).toBe(1);
  });

  it("a long idle period leaves a fresh budget", () => {
    const { advance, requests, drain } = setup(0.2, 2);
    requests(100);
    expect(drain()).toBe(22);
    advance(3_600_000);
    expect(drain()).toBe(2);
  });

  it("defaults: 20 retries plus 20 % of requests per 10 s", () => {
    const budget = new RetryBudget();
    for (let k = 0; k < 100; k++) budget.recordRequest();
    let n = 0;
    while (n < 1_000 && budget.tryRetry()) n++;
    // 40 unless the wall clock happened to cross 10 s meanwhile (it does not in a few microseconds)
    expect(n).toBe(40);
  });
});
