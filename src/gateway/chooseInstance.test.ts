import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { InstanceSchema, InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import { BALANCING_POLICIES, chooseInstance, type BalancingPolicy } from "./chooseInstance.js";

const inst = (instanceId: string, extra: { weight?: number; inFlight?: number; maxConcurrency?: number } = {}): Instance =>
  create(InstanceSchema, { instanceId, model: "m", state: InstanceState.ONLINE, maxConcurrency: 4, ...extra });

/** A random() that returns the given values in turn and fails the test when asked for more. */
function sequence(values: number[]): () => number {
  let i = 0;
  return () => {
    if (i >= values.length) throw new Error(`random() called more than ${values.length} times`);
    return values[i++];
  };
}

/** n evenly spaced values in [0, 1): a deterministic stand-in for a uniform source. */
const grid = (n: number) => Array.from({ length: n }, (_, k) => k / n);

const noLoad = () => 0;
const loadByInFlight = (i: Instance) => i.inFlight / Math.max(1, i.maxConcurrency);

describe("chooseInstance", () => {
  it("lists its policies", () => {
    expect([...BALANCING_POLICIES].sort()).toEqual(["p2c", "prefix", "round-robin", "weighted"]);
  });

  describe("single candidate", () => {
    for (const policy of BALANCING_POLICIES) {
      it(`${policy}: returns it without drawing a random number`, () => {
        const only = inst("only", { weight: 5, inFlight: 3 });
        const random = () => {
          throw new Error("random() must not be called");
        };
        const cursor = { lastId: "x" };
        expect(chooseInstance(policy, [only], loadByInFlight, cursor, random)).toBe(only);
      });
    }
  });

  describe("p2c", () => {
    it("with two candidates always picks the less loaded one, whatever the draw", () => {
      const busy = inst("busy", { inFlight: 3 });
      const idle = inst("idle", { inFlight: 1 });
      for (const r1 of grid(10)) {
        for (const r2 of grid(10)) {
          expect(chooseInstance("p2c", [busy, idle], loadByInFlight, {}, sequence([r1, r2]))).toBe(idle);
          expect(chooseInstance("p2c", [idle, busy], loadByInFlight, {}, sequence([r1, r2]))).toBe(idle);
        }
      }
    });

    it("draws two distinct candidates and returns the less loaded of them", () => {
      const a = inst("a", { inFlight: 2 });
      const b = inst("b", { inFlight: 0 });
      const c = inst("c", { inFlight: 1 });
      const candidates = [a, b, c];
      // i = floor(r1 * 3), j = floor(r2 * 2), skipping i.
      // r1 -> a (i=0); r2 -> j=0 -> skip to b: a vs b -> b
      expect(chooseInstance("p2c", candidates, loadByInFlight, {}, sequence([0.1, 0.1]))).toBe(b);
      // a vs c -> c
      expect(chooseInstance("p2c", candidates, loadByInFlight, {}, sequence([0.1, 0.9]))).toBe(c);
      // c (i=2) vs a (j=0) -> c
      expect(chooseInstance("p2c", candidates, loadByInFlight, {}, sequence([0.9, 0.1]))).toBe(c);
      // c vs b -> b
      expect(chooseInstance("p2c", candidates, loadByInFlight, {}, sequence([0.9, 0.9]))).toBe(b);
      // b (i=1) vs a (j=0) -> b ; b vs c (j=1 -> 2) -> b
      expect(chooseInstance("p2c", candidates, loadByInFlight, {}, sequence([0.5, 0.1]))).toBe(b);
      expect(chooseInstance("p2c", candidates, loadByInFlight, {}, sequence([0.5, 0.9]))).toBe(b);
    });

    it("never picks the most loaded of several, and favours the least loaded", () => {
      const loads: Record<string, number> = { a: 0.9, b: 0.1, c: 0.5, d: 0.3 };
      const candidates = Object.keys(loads).map((id) => inst(id));
      const counts: Record<string, number> = { a: 0, b: 0, c: 0, d: 0 };
      // 40 × 39 draws: every ordered pair (i, j) of distinct candidates comes up exactly 10 × 13 = 130 times.
      for (const r1 of grid(40)) {
        for (const r2 of grid(39)) {
          const pick = chooseInstance("p2c", candidates, (i) => loads[i.instanceId], {}, sequence([r1, r2]));
          counts[pick.instanceId]++;
        }
      }
      // Of the 12 ordered pairs, the least loaded (b) wins the 6 it is in, d 4, c 2, the most loaded (a) none.
      expect(counts).toEqual({ a: 0, b: 780, c: 260, d: 520 });
    });

    it("uses the load function it is given (not the record's own fields)", () => {
      const a = inst("a", { inFlight: 0 });
      const b = inst("b", { inFlight: 4 });
      const inverted = (i: Instance) => (i.instanceId === "a" ? 1 : 0);
      expect(chooseInstance("p2c", [a, b], inverted, {}, sequence([0, 0]))).toBe(b);
    });

    it("defaults to Math.random and always returns one of the candidates", () => {
      const candidates = ["a", "b", "c"].map((id) => inst(id));
      for (let k = 0; k < 50; k++) expect(candidates).toContain(chooseInstance("p2c", candidates, noLoad, {}));
    });
  });

  describe("round-robin", () => {
    it("cycles in instance-id order, whatever the order of the candidates, advancing the cursor", () => {
      const candidates = [inst("c"), inst("a"), inst("d"), inst("b")];
      const cursor: { lastId?: string } = {};
      const picks: string[] = [];
      for (let k = 0; k < 9; k++) picks.push(chooseInstance("round-robin", candidates, noLoad, cursor).instanceId);
      expect(picks).toEqual(["a", "b", "c", "d", "a", "b", "c", "d", "a"]);
      expect(cursor.lastId).toBe("a");
    });

    it("ignores load and random", () => {
      const candidates = [inst("b", { inFlight: 4 }), inst("a", { inFlight: 0 })];
      const random = () => {
        throw new Error("random() must not be called");
      };
      const cursor = { lastId: "a" };
      expect(chooseInstance("round-robin", candidates, loadByInFlight, cursor, random).instanceId).toBe("b");
      expect(cursor.lastId).toBe("b");
    });

    it("keeps separate cursors independent (one per model)", () => {
      const m1 = [inst("a"), inst("b")];
      const m2 = [inst("p"), inst("q"), inst("r")];
      const c1 = {};
      const c2 = {};
      const picks: string[] = [];
      for (let k = 0; k < 3; k++) {
        picks.push(chooseInstance("round-robin", m1, noLoad, c1).instanceId);
        picks.push(chooseInstance("round-robin", m2, noLoad, c2).instanceId);
      }
      expect(picks).toEqual(["a", "p", "b", "q", "a", "r"]);
    });

    it("does not modify the candidates array", () => {
      const candidates = [inst("c"), inst("a"), inst("b")];
      chooseInstance("round-robin", candidates, noLoad, {});
      expect(candidates.map((i) => i.instanceId)).toEqual(["c", "a", "b"]);
    });

    it("picks the next instance after the last pick when the candidate set shrinks", () => {
      const a = inst("a");
      const b = inst("b");
      const c = inst("c");
      const cursor = {};
      expect(chooseInstance("round-robin", [a, b, c], noLoad, cursor)).toBe(a);
      expect(chooseInstance("round-robin", [a, b, c], noLoad, cursor)).toBe(b);
      // a is ejected: the next after b is c, not b again.
      expect(chooseInstance("round-robin", [b, c], noLoad, cursor)).toBe(c);
    });
  });

  describe("weighted", () => {
    it("follows the weights over a uniform sequence of draws", () => {
      const candidates = [inst("a", { weight: 1 }), inst("b", { weight: 3 }), inst("c", { weight: 6 })];
      const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
      for (const r of grid(1000)) counts[chooseInstance("weighted", candidates, noLoad, {}, sequence([r])).instanceId]++;
      expect(counts).toEqual({ a: 100, b: 300, c: 600 });
    });

    it("counts a weight of 0 as 1", () => {
      const candidates = [inst("zero", { weight: 0 }), inst("two", { weight: 2 }), inst("unset")];
      const counts: Record<string, number> = { zero: 0, two: 0, unset: 0 };
      for (const r of grid(400)) counts[chooseInstance("weighted", candidates, noLoad, {}, sequence([r])).instanceId]++;
      expect(counts).toEqual({ zero: 100, two: 200, unset: 100 });
    });

    it("is uniform when every weight is 0", () => {
      const candidates = [inst("a"), inst("b"), inst("c"), inst("d")];
      const counts: Record<string, number> = { a: 0, b: 0, c: 0, d: 0 };
      for (const r of grid(400)) counts[chooseInstance("weighted", candidates, noLoad, {}, sequence([r])).instanceId]++;
      expect(counts).toEqual({ a: 100, b: 100, c: 100, d: 100 });
    });

    it("maps each draw to the weight interval it falls in, ends included", () => {
      const candidates = [inst("a", { weight: 1 }), inst("b", { weight: 3 })];
      const pick = (r: number) => chooseInstance("weighted", candidates, noLoad, {}, sequence([r])).instanceId;
      expect(pick(0)).toBe("a");
      expect(pick(0.2499)).toBe("a");
      expect(pick(0.25)).toBe("b");
      expect(pick(0.9999999999)).toBe("b");
    });

    it("ignores load and the cursor", () => {
      const candidates = [inst("a", { weight: 1, inFlight: 4 }), inst("b", { weight: 1, inFlight: 0 })];
      const cursor = { lastId: "q" };
      expect(chooseInstance("weighted", candidates, loadByInFlight, cursor, sequence([0.1])).instanceId).toBe("a");
      expect(cursor.lastId).toBe("q");
    });

    it("defaults to Math.random and roughly follows the weights", () => {
      const candidates = [inst("light", { weight: 1 }), inst("heavy", { weight: 9 })];
      let heavy = 0;
      for (let k = 0; k < 2000; k++) if (chooseInstance("weighted", candidates, noLoad, {}).instanceId === "heavy") heavy++;
      // Expected 1800; the bounds are many standard deviations (~13) away.
      expect(heavy).toBeGreaterThan(1650);
      expect(heavy).toBeLessThan(1950);
    });
  });

  it("treats an unknown policy like p2c", () => {
    const a = inst("a", { inFlight: 3 });
    const b = inst("b", { inFlight: 0 });
    expect(chooseInstance("bogus" as BalancingPolicy, [a, b], loadByInFlight, {}, sequence([0, 0]))).toBe(b);
  });
});
