import { describe, it, expect } from "vitest";
import { create } from "@bufbuild/protobuf";
import { InstanceSchema, InstanceState } from "../gen/smmf/v1/instance_pb.js";
import { MemoryRegistry } from "./MemoryRegistry.js";

const inst = (id: string, model = "m", state = InstanceState.ONLINE) => create(InstanceSchema, { instanceId: id, model, state });

describe("MemoryRegistry", () => {
  it("starts empty", () => {
    expect(new MemoryRegistry().snapshot()).toEqual([]);
  });

  it("register adds instances to the snapshot", async () => {
    const r = new MemoryRegistry();
    await r.register(inst("a"));
    await r.register(inst("b", "other"));
    expect(r.snapshot().map((i) => i.instanceId).sort()).toEqual(["a", "b"]);
  });

  it("register with the same id replaces the record", async () => {
    const r = new MemoryRegistry();
    await r.register(inst("a", "m", InstanceState.LOADING));
    await r.register(inst("a", "m", InstanceState.ONLINE));
    expect(r.snapshot()).toHaveLength(1);
    expect(r.snapshot()[0].state).toBe(InstanceState.ONLINE);
  });

  it("unregister removes an instance", async () => {
    const r = new MemoryRegistry();
    await r.register(inst("a"));
    await r.register(inst("b"));
    await r.unregister("a");
    expect(r.snapshot().map((i) => i.instanceId)).toEqual(["b"]);
  });

  it("snapshot is a stable value: later changes don't mutate an earlier snapshot", async () => {
    const r = new MemoryRegistry();
    await r.register(inst("a"));
    const before = r.snapshot();
    expect(r.snapshot()).toBe(before);
    await r.register(inst("b"));
    expect(before.map((i) => i.instanceId)).toEqual(["a"]);
    expect(r.snapshot()).not.toBe(before);
  });

  it("notifies subscribers after each change, with the new snapshot visible", async () => {
    const r = new MemoryRegistry();
    const seen: string[][] = [];
    r.subscribe(() => seen.push(r.snapshot().map((i) => i.instanceId)));
    await r.register(inst("a"));
    await r.register(inst("b"));
    await r.unregister("a");
    expect(seen).toEqual([["a"], ["a", "b"], ["b"]]);
  });

  it("does not notify when unregistering an unknown id", async () => {
    const r = new MemoryRegistry();
    let calls = 0;
    r.subscribe(() => calls++);
    await r.unregister("nope");
    expect(calls).toBe(0);
  });

  it("unsubscribe stops notifications for that listener only", async () => {
    const r = new MemoryRegistry();
    let a = 0;
    let b = 0;
    const offA = r.subscribe(() => a++);
    r.subscribe(() => b++);
    await r.register(inst("x"));
    offA();
    await r.register(inst("y"));
    expect(a).toBe(1);
    expect(b).toBe(2);
  });

  it("close drops every listener", async () => {
    const r = new MemoryRegistry();
    let calls = 0;
    r.subscribe(() => calls++);
    await r.close();
    await r.register(inst("x"));
    expect(calls).toBe(0);
  });
});
