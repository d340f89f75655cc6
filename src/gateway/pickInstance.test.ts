import { describe, it, expect } from "vitest";
import { create } from "@bufbuild/protobuf";
import { InstanceSchema, InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { pickInstance } from "./pickInstance.js";

function inst(id: string, model: string, over: Partial<{ state: InstanceState; maxConcurrency: number; embeddingSize: number }> = {}): Instance {
  return create(InstanceSchema, {
    instanceId: id,
    model,
    state: over.state ?? InstanceState.ONLINE,
    maxConcurrency: over.maxConcurrency ?? 4,
    embeddingSize: over.embeddingSize ?? 0,
  });
}

function loads(map: Record<string, number>): (id: string) => number {
  return (id) => map[id] ?? 0;
}

function throws(fn: () => unknown): SmmfError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SmmfError);
    return err as SmmfError;
  }
  throw new Error("expected pickInstance to throw");
}

describe("pickInstance", () => {
  it("unknown model → model_not_found with param model", () => {
    const err = throws(() => pickInstance([inst("a", "other")], "missing", loads({})));
    expect(err.code).toBe("model_not_found");
    expect(err.param).toBe("model");
    expect(err.httpStatus).toBe(404);
    expect(err.message).toContain("missing");
  });

  it("no instances at all → model_not_found", () => {
    expect(throws(() => pickInstance([], "m", loads({}))).code).toBe("model_not_found");
  });

  it("known model with no ONLINE instance → unavailable", () => {
    const instances = [
      inst("a", "m", { state: InstanceState.LOADING }),
      inst("b", "m", { state: InstanceState.DRAINING }),
      inst("c", "m", { state: InstanceState.OFFLINE }),
      inst("d", "m", { state: InstanceState.UNSPECIFIED }),
      inst("e", "other"),
    ];
    const err = throws(() => pickInstance(instances, "m", loads({})));
    expect(err.code).toBe("unavailable");
    expect(err.httpStatus).toBe(503);
  });

  it("skips non-ONLINE instances even when they are idle", () => {
    const instances = [inst("draining", "m", { state: InstanceState.DRAINING }), inst("busy", "m")];
    expect(pickInstance(instances, "m", loads({ busy: 3 })).instanceId).toBe("busy");
  });

  it("picks only instances of the asked model", () => {
    const instances = [inst("x", "other"), inst("y", "m")];
    expect(pickInstance(instances, "m", loads({ y: 100 })).instanceId).toBe("y");
  });

  it("picks the least loaded relative to maxConcurrency", () => {
    // a: 2/2 = 1.0, b: 3/8 = 0.375, c: 1/2 = 0.5 → b although it has the most requests.
    const instances = [inst("a", "m", { maxConcurrency: 2 }), inst("b", "m", { maxConcurrency: 8 }), inst("c", "m", { maxConcurrency: 2 })];
    expect(pickInstance(instances, "m", loads({ a: 2, b: 3, c: 1 })).instanceId).toBe("b");
    // with b busier: 7/8 = 0.875 → c
    expect(pickInstance(instances, "m", loads({ a: 2, b: 7, c: 1 })).instanceId).toBe("c");
  });

  it("treats maxConcurrency 0 as 1", () => {
    // a: 1/max(1,0) = 1, b: 1/2 = 0.5 → b
    const instances = [inst("a", "m", { maxConcurrency: 0 }), inst("b", "m", { maxConcurrency: 2 })];
    expect(pickInstance(instances, "m", loads({ a: 1, b: 1 })).instanceId).toBe("b");
    // a idle (0) still wins over b busy
    expect(pickInstance(instances, "m", loads({ a: 0, b: 1 })).instanceId).toBe("a");
  });

  it("keeps the first instance on a tie", () => {
    const instances = [inst("a", "m"), inst("b", "m")];
    expect(pickInstance(instances, "m", loads({})).instanceId).toBe("a");
  });

  it("asks inFlight for the instance id", () => {
    const asked: string[] = [];
    pickInstance([inst("a", "m"), inst("b", "m"), inst("z", "other")], "m", (id) => {
      asked.push(id);
      return 0;
    });
    expect(asked.sort()).toEqual(["a", "b"]);
  });

  describe("embeddings", () => {
    it("needs embeddingSize > 0", () => {
      const instances = [inst("gen", "m", { embeddingSize: 0 }), inst("emb", "m", { embeddingSize: 64 })];
      expect(pickInstance(instances, "m", loads({ emb: 4 }), { embeddings: true }).instanceId).toBe("emb");
      expect(pickInstance(instances, "m", loads({ emb: 4 })).instanceId).toBe("gen");
    });

    it("online model without embeddings → invalid_argument on model", () => {
      const err = throws(() => pickInstance([inst("gen", "m")], "m", loads({}), { embeddings: true }));
      expect(err.code).toBe("invalid_argument");
      expect(err.param).toBe("model");
    });

    it("embedding instance not online → unavailable", () => {
      const instances = [inst("emb", "m", { embeddingSize: 64, state: InstanceState.LOADING })];
      expect(throws(() => pickInstance(instances, "m", loads({}), { embeddings: true })).code).toBe("unavailable");
    });

    it("unknown model → model_not_found", () => {
      expect(throws(() => pickInstance([inst("e", "x", { embeddingSize: 8 })], "m", loads({}), { embeddings: true })).code).toBe("model_not_found");
    });
  });
});
