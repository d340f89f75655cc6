import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ModelRecordSchema, type ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { MemoryModelStore } from "./MemoryModelStore.js";

const record = (name: string, replicas = 1, generation = 1n): ModelRecord => create(ModelRecordSchema, { spec: { name, replicas }, generation });

const names = (store: MemoryModelStore) => store.list().map((r) => r.spec!.name);

describe("MemoryModelStore", () => {
  it("starts empty", async () => {
    const store = new MemoryModelStore();
    await store.ready();
    expect(store.list()).toEqual([]);
    expect(store.get("qwen")).toBeUndefined();
  });

  it("stores a created record and lists it", async () => {
    const store = new MemoryModelStore();
    const created = await store.create(record("qwen", 2));
    expect(created.spec?.replicas).toBe(2);
    expect(store.get("qwen")).toBe(created);
    expect(names(store)).toEqual(["qwen"]);
  });

  it("refuses to create a model that already exists, keeping the first", async () => {
    const store = new MemoryModelStore();
    await store.create(record("qwen", 2));
    await expect(store.create(record("qwen", 5))).rejects.toMatchObject({ code: "already_exists", param: "name", message: expect.stringMatching(/^The model 'qwen' is already started/) });
    expect(store.get("qwen")?.spec?.replicas).toBe(2);
    expect(store.list()).toHaveLength(1);
  });

  it("applies an update to the current record and returns the result", async () => {
    const store = new MemoryModelStore();
    await store.create(record("qwen", 1, 3n));
    const next = await store.update("qwen", (current) => create(ModelRecordSchema, { ...current, generation: current.generation + 1n }));
    expect(next.generation).toBe(4n);
    expect(store.get("qwen")?.generation).toBe(4n);
    expect(store.list().map((r) => r.generation)).toEqual([4n]);
  });

  it("says the model is not found when updating or removing an unknown one", async () => {
    const store = new MemoryModelStore();
    let updaterCalled = false;
    await expect(store.update("ghost", (r) => ((updaterCalled = true), r))).rejects.toMatchObject({ code: "model_not_found", param: "name", message: expect.stringContaining("'ghost'") });
    expect(updaterCalled).toBe(false);
    await expect(store.remove("ghost")).rejects.toMatchObject({ code: "model_not_found", param: "name", message: expect.stringContaining("'ghost'") });
    expect(store.list()).toEqual([]);
  });

  it("forgets a removed model", async () => {
    const store = new MemoryModelStore();
    await store.create(record("a"));
    await store.create(record("b"));
    await store.remove("a");
    expect(names(store)).toEqual(["b"]);
    expect(store.get("a")).toBeUndefined();
  });

  it("calls subscribers on each change, and no longer once unsubscribed", async () => {
    const store = new MemoryModelStore();
    const seen: string[][] = [];
    const unsubscribe = store.subscribe(() => seen.push(names(store)));
    await store.create(record("a"));
    await store.create(record("b"));
    await store.update("a", (r) => r);
    await store.remove("b");
    expect(seen).toEqual([["a"], ["a", "b"], ["a", "b"], ["a"]]);
    unsubscribe();
    await store.remove("a");
    expect(seen).toHaveLength(4);
  });

  it("does not call subscribers when a change is refused", async () => {
    const store = new MemoryModelStore();
    await store.create(record("a"));
    let calls = 0;
    store.subscribe(() => calls++);
    await expect(store.create(record("a", 3))).rejects.toMatchObject({ code: "already_exists" });
    await expect(store.update("ghost", (r) => r)).rejects.toMatchObject({ code: "model_not_found" });
    await expect(store.remove("ghost")).rejects.toMatchObject({ code: "model_not_found" });
    expect(calls).toBe(0);
    expect(store.get("a")?.spec?.replicas).toBe(1);
  });

  it("stops calling subscribers once closed", async () => {
    const store = new MemoryModelStore();
    let calls = 0;
    store.subscribe(() => calls++);
    await store.close();
    await store.create(record("a"));
    expect(calls).toBe(0);
  });
});
