import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { InstanceSchema, InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import { ModelRecordSchema, ModelStatusSchema, type ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { describeModels } from "./describeModels.js";

const { LOADING, ONLINE, DRAINING } = InstanceState;

const record = (name: string, replicas: number, extra: { generation?: bigint; createdSeconds?: bigint } = {}): ModelRecord =>
  create(ModelRecordSchema, {
    spec: { name, replicas, source: `${name}.gguf` },
    generation: extra.generation ?? 1n,
    createdAt: { seconds: extra.createdSeconds ?? 100n },
  });

const inst = (instanceId: string, model: string, state: InstanceState, extra: { workerId?: string; inFlight?: number; startedSeconds?: bigint; managed?: boolean } = {}): Instance =>
  create(InstanceSchema, {
    instanceId,
    model,
    state,
    engine: "llama.cpp",
    workerId: extra.workerId ?? "w1",
    inFlight: extra.inFlight ?? 0,
    managed: extra.managed ?? false,
    startedAt: extra.startedSeconds === undefined ? undefined : { seconds: extra.startedSeconds },
  });

describe("describeModels", () => {
  it("describes a managed model from its record and the leading controller's message", () => {
    const statuses = [create(ModelStatusSchema, { name: "qwen", message: "no worker has room" })];
    const [model] = describeModels([record("qwen", 3, { generation: 7n, createdSeconds: 42n })], [], statuses);
    expect(model.name).toBe("qwen");
    expect(model.managed).toBe(true);
    expect(model.desiredReplicas).toBe(3);
    expect(model.readyReplicas).toBe(0);
    expect(model.generation).toBe(7n);
    expect(model.created).toBe(42n);
    expect(model.spec?.source).toBe("qwen.gguf");
    expect(model.message).toBe("no worker has room");
    expect(model.engines).toEqual(["llama.cpp"]);
  });

  it("counts only online instances as ready and sums their requests in flight", () => {
    const instances = [
      inst("a", "qwen", ONLINE, { inFlight: 2, managed: true }),
      inst("b", "qwen", LOADING, { managed: true }),
      inst("c", "qwen", DRAINING, { inFlight: 1, managed: true }),
      inst("d", "qwen", ONLINE, { inFlight: 3, managed: true }),
    ];
    const [model] = describeModels([record("qwen", 2)], instances, []);
    expect(model.readyReplicas).toBe(2);
    expect(model.inFlight).toBe(6);
    expect(model.instances.map((i) => i.instanceId)).toEqual(["a", "b", "c", "d"]);
    expect(model.message).toBe("");
  });

  it("describes a model only static workers serve from its instances, as unmanaged", () => {
    const instances = [inst("s2", "static", ONLINE, { workerId: "w2", startedSeconds: 500n }), inst("s1", "static", LOADING, { workerId: "w1", startedSeconds: 300n })];
    const [model] = describeModels([], instances, []);
    expect(model.name).toBe("static");
    expect(model.managed).toBe(false);
    expect(model.desiredReplicas).toBe(0);
    expect(model.spec).toBeUndefined();
    expect(model.readyReplicas).toBe(1);
    expect(model.created).toBe(300n);
    expect(model.instances.map((i) => i.instanceId)).toEqual(["s1", "s2"]);
  });

  it("lists every model once, sorted by name", () => {
    const models = describeModels([record("mistral", 1), record("alpha", 1)], [inst("x", "zeta", ONLINE), inst("y", "beta", ONLINE), inst("z", "mistral", ONLINE)], []);
    expect(models.map((m) => [m.name, m.managed])).toEqual([
      ["alpha", true],
      ["beta", false],
      ["mistral", true],
      ["zeta", false],
    ]);
  });

  it("lists nothing when there are neither records nor instances", () => {
    expect(describeModels([], [], [])).toEqual([]);
  });
});
