import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { InstanceSchema, InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import { ModelRecordSchema, type ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { planModel } from "./planModel.js";

const { LOADING, ONLINE, DRAINING, OFFLINE } = InstanceState;

const inst = (instanceId: string, state: InstanceState, extra: { workerId?: string; generation?: bigint } = {}): Instance =>
  create(InstanceSchema, { instanceId, model: "m", managed: true, state, workerId: extra.workerId ?? "w1", generation: extra.generation ?? 1n });

const record = (replicas: number, generation = 1n): ModelRecord => create(ModelRecordSchema, { spec: { name: "m", replicas }, generation });

const ids = (instances: readonly Instance[]) => instances.map((i) => i.instanceId);

describe("planModel", () => {
  describe("a stopped model (no record)", () => {
    it("drains every live instance and is not converged while any remain", () => {
      const plan = planModel(undefined, [inst("a", ONLINE), inst("b", LOADING), inst("c", DRAINING)]);
      expect(plan.load).toBe(0);
      expect(ids(plan.drain)).toEqual(["a", "b"]);
      expect(plan.converged).toBe(false);
    });

    it("is still not converged while an instance is draining", () => {
      expect(planModel(undefined, [inst("c", DRAINING)])).toEqual({ load: 0, drain: [], converged: false });
    });

    it("is converged once no instance is left", () => {
      expect(planModel(undefined, [])).toEqual({ load: 0, drain: [], converged: true });
    });
  });

  it("with 0 replicas wanted drains everything, like a stopped model", () => {
    const plan = planModel(record(0), [inst("a", ONLINE), inst("b", ONLINE)]);
    expect(plan.load).toBe(0);
    expect(ids(plan.drain)).toEqual(["a", "b"]);
    expect(plan.converged).toBe(false);
    expect(planModel(record(0), []).converged).toBe(true);
  });

  it("loads all missing instances at once when fewer are live than wanted", () => {
    expect(planModel(record(3), [])).toEqual({ load: 3, drain: [], converged: false });
    expect(planModel(record(3), [inst("a", ONLINE)])).toEqual({ load: 2, drain: [], converged: false });
  });

  it("does not count draining instances as live", () => {
    const plan = planModel(record(2), [inst("a", ONLINE), inst("b", DRAINING), inst("c", DRAINING)]);
    expect(plan.load).toBe(1);
    expect(plan.drain).toEqual([]);
  });

  describe("with more live instances than wanted", () => {
    it("drains only the surplus", () => {
      const plan = planModel(record(1), [inst("a", ONLINE, { workerId: "w1" }), inst("b", ONLINE, { workerId: "w2" }), inst("c", ONLINE, { workerId: "w3" })]);
      expect(plan.load).toBe(0);
      expect(plan.drain).toHaveLength(2);
      expect(plan.converged).toBe(false);
    });

    it("drains loading instances first, then offline ones", () => {
      const instances = [inst("online", ONLINE, { workerId: "w1" }), inst("offline", OFFLINE, { workerId: "w2" }), inst("loading", LOADING, { workerId: "w3" })];
      expect(ids(planModel(record(2), instances).drain)).toEqual(["loading"]);
      expect(ids(planModel(record(1), instances).drain)).toEqual(["loading", "offline"]);
    });

    it("among online instances drains one on the worker hosting the most instances of the model", () => {
      const instances = [inst("alone", ONLINE, { workerId: "w1" }), inst("shared1", ONLINE, { workerId: "w2" }), inst("shared2", ONLINE, { workerId: "w2" })];
      const drained = ids(planModel(record(2), instances).drain);
      expect(drained).toHaveLength(1);
      expect(["shared1", "shared2"]).toContain(drained[0]);
    });
  });

  describe("converged", () => {
    it("is true when the replica count is met, all online and of the current generation", () => {
      expect(planModel(record(2, 3n), [inst("a", ONLINE, { generation: 3n }), inst("b", ONLINE, { generation: 3n })])).toEqual({ load: 0, drain: [], converged: true });
    });

    it("is false while an instance is still loading", () => {
      expect(planModel(record(2), [inst("a", ONLINE), inst("b", LOADING)]).converged).toBe(false);
    });

    it("is false while an instance is offline", () => {
      expect(planModel(record(2), [inst("a", ONLINE), inst("b", OFFLINE)]).converged).toBe(false);
    });

    it("is false while an extra instance is still draining", () => {
      const plan = planModel(record(2), [inst("a", ONLINE), inst("b", ONLINE), inst("c", DRAINING)]);
      expect(plan).toEqual({ load: 0, drain: [], converged: false });
    });

    it("is false while an instance is of an older generation", () => {
      expect(planModel(record(2, 2n), [inst("a", ONLINE, { generation: 2n }), inst("b", ONLINE, { generation: 1n })]).converged).toBe(false);
    });
  });

  describe("rolling update (instances of an older generation)", () => {
    it("loads exactly one new instance when the count is met and nothing is loading", () => {
      expect(planModel(record(3, 2n), [inst("a", ONLINE), inst("b", ONLINE), inst("c", ONLINE)])).toEqual({ load: 1, drain: [], converged: false });
    });

    it("does nothing while the new instance loads", () => {
      const instances = [inst("a", ONLINE), inst("b", ONLINE), inst("new", LOADING, { generation: 2n })];
      expect(planModel(record(2, 2n), instances)).toEqual({ load: 0, drain: [], converged: false });
    });

    it("drains exactly one old instance, never a new one, once the new one is online", () => {
      // The new instances share a worker, so a plain surplus drain would pick one of them.
      const instances = [
        inst("old", ONLINE, { workerId: "w1", generation: 1n }),
        inst("new1", ONLINE, { workerId: "w2", generation: 2n }),
        inst("new2", ONLINE, { workerId: "w2", generation: 2n }),
      ];
      expect(ids(planModel(record(2, 2n), instances).drain)).toEqual(["old"]);
    });

    it("drains the old instance that shares a worker with a new one, so the replicas stay spread", () => {
      const instances = [
        inst("old-alone", ONLINE, { workerId: "w1", generation: 1n }),
        inst("old-shared", ONLINE, { workerId: "w2", generation: 1n }),
        inst("new", ONLINE, { workerId: "w2", generation: 2n }),
      ];
      expect(ids(planModel(record(2, 2n), instances).drain)).toEqual(["old-shared"]);
    });

    it("keeps at least the replica count online and loads one at a time, from start to end", () => {
      const replicas = 2;
      const target = record(replicas, 2n);
      let world = [inst("a", ONLINE, { workerId: "w1" }), inst("b", ONLINE, { workerId: "w2" })];
      let loaded = 0;
      let converged = false;
      for (let step = 0; step < 20 && !converged; step++) {
        const plan = planModel(target, world);
        converged = plan.converged;
        expect(plan.load).toBeLessThanOrEqual(1);
        for (const victim of plan.drain) expect(victim.generation).toBe(1n);
        const drained = new Set(ids(plan.drain));
        world = world.map((i) => (drained.has(i.instanceId) ? create(InstanceSchema, { ...i, state: DRAINING }) : i));
        for (let k = 0; k < plan.load; k++) world.push(inst(`new${++loaded}`, LOADING, { workerId: `w${loaded}`, generation: 2n }));

        expect(world.filter((i) => i.state === ONLINE).length).toBeGreaterThanOrEqual(replicas);
        expect(world.filter((i) => i.state === LOADING).length).toBeLessThanOrEqual(1);

        // Time passes: loads come online, drained instances unload.
        world = world.filter((i) => i.state !== DRAINING).map((i) => (i.state === LOADING ? create(InstanceSchema, { ...i, state: ONLINE }) : i));
      }
      expect(converged).toBe(true);
      expect(loaded).toBe(replicas);
      expect(world.map((i) => [i.state, i.generation])).toEqual([
        [ONLINE, 2n],
        [ONLINE, 2n],
      ]);
    });
  });
});
