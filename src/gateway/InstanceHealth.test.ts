import { describe, expect, it } from "vitest";
import { DEFAULT_EJECTION, InstanceHealth, type EjectionOptions } from "./InstanceHealth.js";

const OPTIONS: EjectionOptions = { consecutiveFailures: 3, baseMs: 1_000, maxMs: 5_000 };

/** An InstanceHealth on a clock the test moves by hand. */
function setup(options: EjectionOptions = OPTIONS) {
  const clock = { now: 1_000_000 };
  const health = new InstanceHealth(options, () => clock.now);
  const advance = (ms: number) => {
    clock.now += ms;
  };
  const fail = (id: string, times: number) => {
    for (let k = 0; k < times; k++) health.recordFailure(id);
  };
  /** How long `id` stays ejected from now, to the millisecond (0 when it is not ejected). */
  const remaining = (id: string): number => {
    if (!health.isEjected(id)) return 0;
    const start = clock.now;
    let lo = 0;
    let hi = 1;
    while (health.isEjected(id) && hi < 1e9) {
      clock.now = start + hi;
      if (health.isEjected(id)) {
        lo = hi;
        hi *= 2;
      }
    }
    // isEjected(start + lo) is true, isEjected(start + hi) false
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      clock.now = start + mid;
      if (health.isEjected(id)) lo = mid;
      else hi = mid;
    }
    clock.now = start;
    return hi;
  };
  return { clock, health, advance, fail, remaining };
}

describe("InstanceHealth", () => {
  it("has sensible defaults", () => {
    expect(DEFAULT_EJECTION).toEqual({ consecutiveFailures: 2, baseMs: 1_000, maxMs: 30_000 });
    const health = new InstanceHealth();
    health.recordFailure("a");
    expect(health.isEjected("a")).toBe(false);
    health.recordFailure("a");
    expect(health.isEjected("a")).toBe(true);
  });

  it("knows nothing of an instance it never heard of", () => {
    const { health } = setup();
    expect(health.isEjected("nobody")).toBe(false);
    health.recordSuccess("nobody");
    expect(health.isEjected("nobody")).toBe(false);
    expect(health.ejectionCount).toBe(0);
  });

  it("ejects after the configured number of consecutive failures, not before", () => {
    const { health, fail } = setup();
    fail("a", 2);
    expect(health.isEjected("a")).toBe(false);
    expect(health.ejectionCount).toBe(0);
    fail("a", 1);
    expect(health.isEjected("a")).toBe(true);
    expect(health.ejectionCount).toBe(1);
  });

  it("counts failures per instance", () => {
    const { health, fail } = setup();
    fail("a", 2);
    fail("b", 2);
    expect(health.isEjected("a")).toBe(false);
    expect(health.isEjected("b")).toBe(false);
    fail("b", 1);
    expect(health.isEjected("a")).toBe(false);
    expect(health.isEjected("b")).toBe(true);
  });

  it("a success resets the count of consecutive failures", () => {
    const { health, fail } = setup();
    fail("a", 2);
    health.recordSuccess("a");
    fail("a", 2);
    expect(health.isEjected("a")).toBe(false);
    health.recordSuccess("a");
    fail("a", 2);
    expect(health.isEjected("a")).toBe(false);
    fail("a", 1);
    expect(health.isEjected("a")).toBe(true);
  });

  it("the ejection ends after the cool-down (baseMs for the first)", () => {
    const { health, fail, advance, remaining } = setup();
    fail("a", 3);
    expect(remaining("a")).toBe(1_000);
    advance(999);
    expect(health.isEjected("a")).toBe(true);
    advance(1);
    expect(health.isEjected("a")).toBe(false);
  });

  it("doubles the cool-down for each ejection in a row, up to maxMs", () => {
    const { health, fail, advance, remaining } = setup();
    const seen: number[] = [];
    for (let k = 0; k < 6; k++) {
      fail("a", 3);
      const ms = remaining("a");
      seen.push(ms);
      advance(ms);
      expect(health.isEjected("a")).toBe(false);
    }
    expect(seen).toEqual([1_000, 2_000, 4_000, 5_000, 5_000, 5_000]);
    expect(health.ejectionCount).toBe(6);
  });

  it("a success after the cool-down forgets the history: the next ejection is back to baseMs", () => {
    const { health, fail, advance, remaining } = setup();
    fail("a", 3);
    advance(1_000);
    fail("a", 3);
    expect(remaining("a")).toBe(2_000);
    advance(2_000);
    health.recordSuccess("a");
    fail("a", 3);
    expect(remaining("a")).toBe(1_000);
  });

  it("a success during the cool-down does not end the ejection", () => {
    const { health, fail, advance } = setup();
    fail("a", 3);
    advance(500);
    health.recordSuccess("a");
    expect(health.isEjected("a")).toBe(true);
    advance(500);
    expect(health.isEjected("a")).toBe(false);
  });

  it("eject() ejects at once, with the same growing cool-down", () => {
    const { health, advance, remaining } = setup();
    health.eject("a");
    expect(health.isEjected("a")).toBe(true);
    expect(health.ejectionCount).toBe(1);
    expect(remaining("a")).toBe(1_000);
    advance(1_000);
    health.eject("a");
    expect(remaining("a")).toBe(2_000);
    expect(health.ejectionCount).toBe(2);
  });

  it("eject() on an ejected instance neither extends the cool-down nor counts again", () => {
    const { health, advance, remaining } = setup();
    health.eject("a");
    advance(600);
    health.eject("a");
    expect(health.ejectionCount).toBe(1);
    expect(remaining("a")).toBe(400);
  });

  it("failures while ejected do not extend the cool-down or count as ejections", () => {
    const { health, fail, advance, remaining } = setup();
    fail("a", 3);
    advance(100);
    fail("a", 5);
    expect(health.ejectionCount).toBe(1);
    expect(remaining("a")).toBe(900);
  });

  it("eject() resets the count of failures", () => {
    const { health, fail, advance } = setup();
    fail("a", 2);
    health.eject("a");
    advance(1_000);
    fail("a", 2);
    expect(health.isEjected("a")).toBe(false);
  });

  it("retain() forgets instances that are gone and keeps the others", () => {
    const { health, fail, advance, remaining } = setup();
    health.eject("gone");
    health.eject("kept");
    fail("gone-too", 2);
    health.retain(new Set(["kept", "new"]));
    expect(health.isEjected("gone")).toBe(false);
    expect(health.isEjected("kept")).toBe(true);
    // "gone-too" lost its two failures: one more does not eject it.
    fail("gone-too", 1);
    expect(health.isEjected("gone-too")).toBe(false);
    // "gone" starts from scratch: its next ejection is back to baseMs.
    advance(1_000);
    health.eject("gone");
    expect(remaining("gone")).toBe(1_000);
    // retain() does not touch the ejection count.
    expect(health.ejectionCount).toBe(3);
  });

  it("ejectionCount counts every ejection of every instance", () => {
    const { health, fail, advance } = setup();
    fail("a", 3);
    health.eject("b");
    fail("c", 3);
    expect(health.ejectionCount).toBe(3);
    advance(1_000);
    fail("a", 3);
    expect(health.ejectionCount).toBe(4);
  });

  it("uses Date.now by default", () => {
    const health = new InstanceHealth({ consecutiveFailures: 1, baseMs: 60_000, maxMs: 60_000 });
    health.recordFailure("a");
    expect(health.isEjected("a")).toBe(true);
    const quick = new InstanceHealth({ consecutiveFailures: 1, baseMs: 0, maxMs: 0 });
    quick.recordFailure("a");
    expect(quick.isEjected("a")).toBe(false);
  });

  it("readmit lifts an ejection at once (its cause, a lost connection, is gone); a later ejection still backs off", () => {
    const { health, remaining } = setup();
    health.eject("a");
    expect(remaining("a")).toBe(1_000);
    health.readmit("a");
    expect(health.isEjected("a")).toBe(false);
    health.eject("a");
    expect(remaining("a")).toBe(2_000);
  });
});
