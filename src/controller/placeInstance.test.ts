import { describe, expect, it } from "vitest";
import { matchesLabels, placeAll, placeInstance, type PlacementCandidate } from "./placeInstance.js";

const MIB = 1024 * 1024;

const worker = (workerId: string, freeMiB: number, extra: { labels?: Record<string, string>; modelInstances?: number } = {}): PlacementCandidate => ({
  workerId,
  labels: extra.labels ?? {},
  freeBytes: freeMiB * MIB,
  modelInstances: extra.modelInstances ?? 0,
});

describe("matchesLabels", () => {
  it("needs every wanted label with the same value", () => {
    expect(matchesLabels({ gpu: "a100", zone: "x" }, { gpu: "a100" })).toBe(true);
    expect(matchesLabels({ gpu: "a100" }, { gpu: "h100" })).toBe(false);
    expect(matchesLabels({ gpu: "a100" }, { gpu: "a100", zone: "x" })).toBe(false);
    expect(matchesLabels({}, {})).toBe(true);
  });
});

describe("placeInstance", () => {
  it("says no worker is connected when there are no candidates", () => {
    expect(placeInstance([], MIB, {})).toEqual({ reason: "no worker is connected" });
  });

  it("only picks workers carrying the placement labels", () => {
    const candidates = [worker("big", 8000), worker("gpu", 1000, { labels: { gpu: "yes", zone: "b" } })];
    expect(placeInstance(candidates, 500 * MIB, { gpu: "yes" })).toEqual({ workerId: "gpu" });
  });

  it("names the wanted labels and the workers when none carries them", () => {
    const placed = placeInstance([worker("w1", 8000), worker("w2", 8000, { labels: { gpu: "no" } })], MIB, { gpu: "yes", zone: "a" });
    expect(placed).toEqual({ reason: "no worker has the labels gpu=yes,zone=a (workers: w1, w2)" });
  });

  it("names the memory needed and the most free on a matching worker when none has room", () => {
    const candidates = [worker("small", 100), worker("medium", 300)];
    const placed = placeInstance(candidates, 500 * MIB, {});
    expect(placed).toEqual({ reason: "no worker has room: an instance needs about 500 MiB; the most free on a matching worker is 300 MiB (medium)" });
  });

  it("ignores the free memory of workers without the labels when saying why nothing fits", () => {
    const candidates = [worker("small", 100, { labels: { gpu: "yes" } }), worker("big", 9000)];
    const placed = placeInstance(candidates, 500 * MIB, { gpu: "yes" });
    expect("reason" in placed && placed.reason).toContain("is 100 MiB (small)");
  });

  it("accepts a worker with exactly the memory needed", () => {
    expect(placeInstance([worker("w1", 500)], 500 * MIB, {})).toEqual({ workerId: "w1" });
  });

  it("spreads replicas: the worker with the fewest instances of the model wins over more free memory", () => {
    const candidates = [worker("busy", 9000, { modelInstances: 2 }), worker("quiet", 1000, { modelInstances: 0 })];
    expect(placeInstance(candidates, 500 * MIB, {})).toEqual({ workerId: "quiet" });
  });

  it("between workers with as many instances picks the one with the most free memory", () => {
    const candidates = [worker("a", 1000, { modelInstances: 1 }), worker("b", 4000, { modelInstances: 1 }), worker("c", 2000, { modelInstances: 1 })];
    expect(placeInstance(candidates, 500 * MIB, {})).toEqual({ workerId: "b" });
  });

  it("does not reorder the caller's candidates", () => {
    const candidates = [worker("a", 1000), worker("b", 4000)];
    placeInstance(candidates, MIB, {});
    expect(candidates.map((c) => c.workerId)).toEqual(["a", "b"]);
  });
});

describe("placeAll", () => {
  it("places instances one after another, spreading them and taking each one's memory", () => {
    const candidates = [worker("a", 3000), worker("b", 2000)];
    expect(placeAll(candidates, 1000 * MIB, {}, 4)).toEqual([{ workerId: "a" }, { workerId: "b" }, { workerId: "a" }, { workerId: "b" }]);
  });

  it("stops at the first instance that does not fit, with its reason", () => {
    const candidates = [worker("a", 1500), worker("b", 1200)];
    const placed = placeAll(candidates, 1000 * MIB, {}, 5);
    expect(placed).toHaveLength(3);
    expect(placed.slice(0, 2)).toEqual([{ workerId: "a" }, { workerId: "b" }]);
    expect(placed[2]).toEqual({ reason: "no worker has room: an instance needs about 1000 MiB; the most free on a matching worker is 500 MiB (a)" });
  });

  it("leaves the caller's candidates untouched", () => {
    const candidates = [worker("a", 3000)];
    placeAll(candidates, 1000 * MIB, {}, 2);
    expect(candidates[0]).toEqual(worker("a", 3000));
  });

  it("places nothing for a count of 0", () => {
    expect(placeAll([worker("a", 3000)], MIB, {}, 0)).toEqual([]);
  });
});
