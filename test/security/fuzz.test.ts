import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CATEGORY_NAMES } from "../../fuzz/cases.js";
import { formatReport, runFuzz, type Failure, type FuzzReport } from "../../fuzz/runFuzz.js";

// A deterministic slice of `npm run fuzz`: the first 500 cases of the same generator and seed (the full run sends
// 10,000), against a real `smmf serve` with API keys on. Each category must come through without a failure: no
// 5xx the route does not document, no RPC INTERNAL, no dropped answer, no 2xx for a caller without the role; and
// the server must survive, answer a chat completion after every batch, and keep its RSS (after a full GC) within
// 10% of its post-warm-up value.
let report: FuzzReport;

beforeAll(async () => {
  report = await runFuzz({ seed: 14, count: 500, warmup: 300, batchSize: 250 });
}, 120_000);

afterAll(() => {
  if (report && report.failures.length > 0) process.stderr.write(`${formatReport(report)}\n`);
});

const describeFailures = (failures: Failure[]) => failures.map((f) => `#${f.index} ${f.label}: ${f.outcome.class} ${f.outcome.detail.slice(0, 200)}`);

describe("fuzz slice (500 cases)", () => {
  it("sends every case and classifies every answer", () => {
    const total = Object.values(report.byClass).reduce((sum, n) => sum + n, 0);
    expect(total).toBeGreaterThanOrEqual(500);
    expect(report.byClass["4xx"]).toBeGreaterThan(100);
    expect(report.byClass["2xx"]).toBeGreaterThan(10);
  });

  it("the server survives: no crash, a chat completion succeeds after every batch, RSS back within 10%", () => {
    expect(describeFailures(report.failures.filter((f) => f.category === "server"))).toEqual([]);
    expect(report.rss.ratio).toBeLessThanOrEqual(1.1);
  });

  for (const category of CATEGORY_NAMES) {
    it(`${category}: no failures`, () => {
      expect(describeFailures(report.failures.filter((f) => f.category === category))).toEqual([]);
    });
  }
});
