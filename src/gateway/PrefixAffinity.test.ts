import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { InstanceSchema, InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import { DEFAULT_PREFIX_MEMORY, PREFIX_SLACK, PrefixAffinity } from "./PrefixAffinity.js";
import type { PrefixKeys } from "./prefixKeys.js";

const inst = (instanceId: string, maxConcurrency = 4): Instance => create(InstanceSchema, { instanceId, model: "m", state: InstanceState.ONLINE, maxConcurrency });

/** Keys of a request: block 0 shared by all, then its own blocks; it ends at its last key. */
const request = (...blocks: string[]): PrefixKeys => ({ keys: ["head", ...blocks], ends: 1 });

/** Loads from in-flight counts (like the router's). */
function loads(inFlight: Record<string, number>) {
  return (i: Instance) => (inFlight[i.instanceId] ?? 0) / Math.max(1, i.maxConcurrency);
}

describe("PrefixAffinity: its memory", () => {
  it("defaults to 50,000 keys and a slack of 0.5", () => {
    const affinity = new PrefixAffinity();
    expect(affinity.maxKeys).toBe(DEFAULT_PREFIX_MEMORY);
    expect(DEFAULT_PREFIX_MEMORY).toBe(50_000);
    expect(affinity.slack).toBe(PREFIX_SLACK);
  });

  it("stays within its bound: the oldest keys go first, recently used ones stay", () => {
    const affinity = new PrefixAffinity({ maxKeys: 100 });
    const a = inst("a");
    const keep = request("kept");
    affinity.record(keep, "a");
    for (let i = 0; i < 1_000; i++) {
      affinity.record(request(`conversation-${i}`), i % 2 ? "a" : "b");
      expect(affinity.size).toBeLessThanOrEqual(100);
      // Used again now and then (a conversation's next turn re-records its keys): it stays.
      if (i % 50 === 0) affinity.record(keep, "a");
    }
    expect(affinity.size).toBe(100);
    expect(affinity.lookup(keep.keys, [a])).toEqual({ instance: a, depth: 2 });
    // The first ones are gone; the last 99 others are there.
    expect(affinity.lookup(request("conversation-0").keys, [a, inst("b")])).toBeUndefined();
    expect(affinity.lookup(request("conversation-900").keys, [a, inst("b")])).toBeUndefined();
    expect(affinity.lookup(request("conversation-999").keys, [a, inst("b")])?.instance.instanceId).toBe("a");
    expect(affinity.lookup(request("conversation-901").keys, [a, inst("b")])?.instance.instanceId).toBe("a");
  });

  it("remembers only where requests end (1 or 2 keys), not the heads they share", () => {
    const affinity = new PrefixAffinity();
    affinity.record({ keys: ["h", "x", "y", "z"], ends: 1 }, "a");
    expect(affinity.size).toBe(1);
    affinity.record({ keys: ["h", "p", "q"], ends: 2 }, "a");
    expect(affinity.size).toBe(3);
    affinity.record({ keys: ["h"], ends: 0 }, "a");
    expect(affinity.size).toBe(3);
    expect(affinity.lookup(["h"], [inst("a")])).toBeUndefined();
    expect(affinity.lookup(["h", "x", "y", "z", "w"], [inst("a")])?.depth).toBe(4);
  });

  it("forgets an instance at once when asked, and its conversation counts when it leaves the registry", () => {
    const affinity = new PrefixAffinity();
    affinity.record(request("1"), "a");
    affinity.record(request("2"), "b");
    affinity.forget("a");
    expect(affinity.size).toBe(1);
    expect(affinity.lookup(request("2").keys, [inst("b")])?.instance.instanceId).toBe("b");
    affinity.retain(new Set(["b"]));
    expect(affinity.size).toBe(1);
  });
});

describe("PrefixAffinity: the rule", () => {
  const a = inst("a");
  const b = inst("b");
  const both = [a, b];

  it("keeps a conversation on its instance while it has room", () => {
    const affinity = new PrefixAffinity({ random: () => 0 });
    const first = affinity.choose(request("u1"), both, both, loads({}));
    expect(first.outcome).toBe("miss");
    affinity.record(request("u1"), first.instance.instanceId);
    const other = first.instance === a ? b : a;
    // The next turn extends the first: it follows it, even when the other instance is idler (within the slack).
    for (const inFlight of [{}, { [first.instance.instanceId]: 1 }, { [first.instance.instanceId]: 2 }, { [first.instance.instanceId]: 3, [other.instanceId]: 1 }]) {
      const next = affinity.choose(request("u1", "a1", "u2"), both, both, loads(inFlight));
      expect(next, JSON.stringify(inFlight)).toMatchObject({ instance: first.instance, outcome: "hit", depth: 2 });
    }
  });

  it("moves it when its instance is full, or busier than the least-busy free one by more than the slack", () => {
    const affinity = new PrefixAffinity({ random: () => 0 });
    affinity.record(request("u1"), "a");
    // a is full: not among the free instances.
    expect(affinity.choose(request("u1", "a1", "u2"), [b], both, loads({ a: 4 }))).toMatchObject({ instance: b, outcome: "overflow", depth: 0 });
    // a has room but runs 3 of 4 while b is idle: 0.75 > 0 + 0.5.
    expect(affinity.choose(request("u1", "a1", "u2"), both, both, loads({ a: 3 }))).toMatchObject({ instance: b, outcome: "overflow" });
    // 2 of 4 against 0: exactly the slack, it stays.
    expect(affinity.choose(request("u1", "a1", "u2"), both, both, loads({ a: 2 }))).toMatchObject({ instance: a, outcome: "hit" });
    // With no slack it moves as soon as another instance is less busy.
    const strict = new PrefixAffinity({ slack: 0, random: () => 0 });
    strict.record(request("u1"), "a");
    expect(strict.choose(request("u1", "u2"), both, both, loads({ a: 1 })).instance).toBe(b);
    expect(strict.choose(request("u1", "u2"), both, both, loads({ a: 1, b: 1 })).instance).toBe(a);
  });

  it("moves it when its instance is gone (or ejected, or already tried): a miss", () => {
    const affinity = new PrefixAffinity({ random: () => 0 });
    affinity.record(request("u1"), "a");
    expect(affinity.choose(request("u1", "a1", "u2"), [b], [b], loads({}))).toMatchObject({ instance: b, outcome: "miss" });
    // An older turn remembered on a live instance is followed when the newest one's instance is gone.
    affinity.record(request("u1", "a1", "u2"), "c");
    expect(affinity.choose(request("u1", "a1", "u2", "a2", "u3"), both, both, loads({ b: 1 }))).toMatchObject({ instance: a, outcome: "hit", depth: 2 });
  });

  it("follows the deepest remembered prefix: a conversation moved to another instance stays there", () => {
    const affinity = new PrefixAffinity({ random: () => 0 });
    affinity.record(request("u1"), "a");
    affinity.record(request("u1", "a1", "u2"), "b");
    expect(affinity.choose(request("u1", "a1", "u2", "a2", "u3"), both, both, loads({}))).toMatchObject({ instance: b, outcome: "hit", depth: 4 });
  });

  it("does not follow a head shared by other conversations (block 0, a common system prompt)", () => {
    const affinity = new PrefixAffinity({ random: () => 0 });
    affinity.record(request("system", "hello"), "a");
    const other = affinity.choose(request("system", "bonjour"), both, both, loads({}));
    expect(other.outcome).toBe("miss");
  });

  it("places new conversations evenly: ties on load go to the instance that started fewer", () => {
    for (const random of [() => 0, () => 0.99, Math.random]) {
      const affinity = new PrefixAffinity({ random });
      const placed: string[] = [];
      for (let i = 0; i < 10; i++) {
        const choice = affinity.choose(request(`new-${i}`), both, both, loads({}));
        expect(choice.outcome).toBe("miss");
        placed.push(choice.instance.instanceId);
      }
      // After every two, one on each.
      for (let n = 2; n <= placed.length; n += 2) expect(placed.slice(0, n).filter((id) => id === "a"), placed.join()).toHaveLength(n / 2);
    }
  });

  it("places a new conversation on the less loaded of two instances first (p2c)", () => {
    const affinity = new PrefixAffinity({ random: () => 0 });
    for (let i = 0; i < 5; i++) expect(affinity.choose(request(`n${i}`), both, both, loads({ a: 1 })).instance).toBe(b);
  });

  it("counts an instance it has not seen as having started as few as the fewest, not zero", () => {
    const affinity = new PrefixAffinity({ random: () => 0 });
    for (let i = 0; i < 10; i++) affinity.choose(request(`n${i}`), both, both, loads({}));
    const c = inst("c");
    const placed: string[] = [];
    for (let i = 0; i < 9; i++) placed.push(affinity.choose(request(`m${i}`), [a, c], [a, c], loads({})).instance.instanceId);
    const onC = placed.filter((id) => id === "c").length;
    expect(onC).toBeGreaterThanOrEqual(4);
    expect(onC).toBeLessThanOrEqual(5);
  });
});
