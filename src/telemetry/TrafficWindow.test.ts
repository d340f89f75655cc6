import { describe, expect, it } from "vitest";
import { TrafficWindow } from "./TrafficWindow.js";

describe("TrafficWindow", () => {
  it("counts each second's requests, errors, tokens and mean TTFT, and leaves out the second under way", () => {
    let now = 1_000_000_000; // ms
    const w = new TrafficWindow(60, () => now);
    w.record(200, 10, 20);
    w.record(200, 5, 40);
    w.record(400, 0, undefined); // the client's mistake: not an error of the service
    w.record(499, 1, 10); // the client went away
    now += 1000;
    w.record(503, 0, undefined);
    w.record(429, 0, undefined);
    w.record(200, 7, undefined); // answered without streaming a first token
    const s = w.series(3);
    expect(s.start).toBe(999_998);
    expect(s.requests).toEqual([0, 0, 4]);
    expect(s.tokens).toEqual([0, 0, 16]);
    expect(s.errors).toEqual([0, 0, 0]);
    expect(s.ttftMs).toEqual([null, null, 23.33]);
    now += 1000;
    const t = w.series(2);
    expect(t).toEqual({ start: 1_000_000, interval: 1, requests: [4, 3], errors: [0, 2], tokens: [16, 7], ttftMs: [23.33, null] });
  });

  it("forgets a second when the ring comes round to its slot again", () => {
    let now = 0;
    const w = new TrafficWindow(5, () => now);
    w.record(200, 1, 1);
    now = 5_000; // the same slot, five seconds later
    w.record(200, 2, 3);
    now = 6_000;
    expect(w.series(5).requests).toEqual([0, 0, 0, 0, 1]);
    expect(w.series(5).tokens).toEqual([0, 0, 0, 0, 2]);
    now = 100_000; // long idle: every slot is stale
    expect(w.series(5).requests).toEqual([0, 0, 0, 0, 0]);
  });

  it("asks for at most the window, at least one second", () => {
    const w = new TrafficWindow(10, () => 50_000);
    expect(w.series(1_000).requests).toHaveLength(10);
    expect(w.series(0).requests).toHaveLength(1);
  });
});
