import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { FastCounter } from "./FastCounter.js";
import { FastHistogram } from "./FastHistogram.js";

const BUCKETS = [0.005, 0.01, 0.025, 0.1, 1];

describe("the request-path metrics", () => {
  it("write the same exposition as prom-client's histogram for the same observations, label sets in first-seen order", async () => {
    const [ours, theirs] = [new Registry(), new Registry()];
    const fast = new FastHistogram({ name: "h_seconds", help: "A histogram.", labelNames: ["endpoint", "model"], buckets: BUCKETS, registers: [ours] });
    const slow = new Histogram({ name: "h_seconds", help: "A histogram.", labelNames: ["endpoint", "model"], buckets: BUCKETS, registers: [theirs] });
    const observations: [number, string, string][] = [[0.004, "chat", "m"], [0.005, "chat", "m"], [0.02, "chat", "m"], [3, "chat", "m"], [0.5, "completions", "m"], [0.0001, "chat", "other"], [0.1, "completions", "m"]];
    for (const [v, endpoint, model] of observations) {
      fast.observe(v, endpoint, model);
      slow.observe({ endpoint, model }, v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain('h_seconds_bucket{le="0.005",endpoint="chat",model="m"} 2');
  });

  it("write the same exposition as prom-client's counter; numbers as label values print as they do", async () => {
    const [ours, theirs] = [new Registry(), new Registry()];
    const fast = new FastCounter({ name: "c_total", help: "A counter.", labelNames: ["endpoint", "model", "status"], registers: [ours] });
    const slow = new Counter({ name: "c_total", help: "A counter.", labelNames: ["endpoint", "model", "status"], registers: [theirs] });
    for (const [n, status] of [[1, 200], [1, 200], [1, 404], [2.5, 200]] as const) {
      fast.inc(n, "chat", "m", status);
      slow.inc({ endpoint: "chat", model: "m", status: String(status) }, n);
    }
    fast.inc(0, "embeddings", "m", 429);
    slow.inc({ endpoint: "embeddings", model: "m", status: "429" }, 0);
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain('c_total{endpoint="chat",model="m",status="200"} 4.5');
  });

  it("refuse what a counter or histogram cannot take, counting nothing", async () => {
    const registry = new Registry();
    const counter = new FastCounter({ name: "c_total", help: "A counter.", labelNames: ["model"], registers: [registry] });
    const histogram = new FastHistogram({ name: "h", help: "A histogram.", labelNames: ["model"], buckets: BUCKETS, registers: [registry] });
    expect(() => counter.inc(-1, "m")).toThrow(RangeError);
    expect(() => counter.inc(Number.NaN, "m")).toThrow(RangeError);
    expect(() => histogram.observe(Number.POSITIVE_INFINITY, "m")).toThrow(RangeError);
    expect((await counter.get()).values).toEqual([]);
    expect((await histogram.get()).values).toEqual([]);
    counter.inc(1, "m");
    registry.resetMetrics();
    expect((await counter.get()).values).toEqual([]);
  });
});
