import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ModelSpecSchema, type ModelSpec } from "../gen/smmf/v1/model_pb.js";
import { applySpecFlags } from "./modelSpecFlags.js";

const base = (): ModelSpec =>
  create(ModelSpecSchema, {
    name: "qwen",
    engine: "llama.cpp",
    source: "qwen.gguf",
    replicas: 2,
    weight: 3,
    llamaCpp: { contextSize: 2048, sequences: 4, threads: 8, gpuLayers: 10, embeddings: false, chatTemplate: "fallback" },
    placement: { gpu: "a100" },
    labels: { team: "ml" },
  });

describe("applySpecFlags", () => {
  it("keeps every value of the base when no flag is given", () => {
    const out = applySpecFlags(base(), {});
    expect(out).toEqual(base());
  });

  it("overrides only the flags that are given", () => {
    const out = applySpecFlags(base(), { replicas: "5", "context-size": "4096", embeddings: "on", "chat-template": "auto", source: "/abs/q.gguf" });
    expect(out.replicas).toBe(5);
    expect(out.source).toBe("/abs/q.gguf");
    expect(out.llamaCpp?.contextSize).toBe(4096);
    expect(out.llamaCpp?.embeddings).toBe(true);
    expect(out.llamaCpp?.chatTemplate).toBe("auto");
    // untouched
    expect(out.name).toBe("qwen");
    expect(out.weight).toBe(3);
    expect(out.llamaCpp?.sequences).toBe(4);
    expect(out.llamaCpp?.threads).toBe(8);
    expect(out.llamaCpp?.gpuLayers).toBe(10);
    expect(out.placement).toEqual({ gpu: "a100" });
    expect(out.labels).toEqual({ team: "ml" });
  });

  it("sets every numeric flag", () => {
    const out = applySpecFlags(base(), { weight: "7", sequences: "16", threads: "2", "gpu-layers": "0", embeddings: "off" });
    expect(out.weight).toBe(7);
    expect(out.llamaCpp).toMatchObject({ sequences: 16, threads: 2, gpuLayers: 0, embeddings: false });
  });

  it("serves embeddings by default when the base has no llama.cpp parameters", () => {
    const out = applySpecFlags(create(ModelSpecSchema, { name: "qwen", replicas: 1 }), { source: "q.gguf" });
    expect(out.llamaCpp?.embeddings).toBe(true);
    expect(out.llamaCpp?.gpuLayers).toBeUndefined();
    expect(out.replicas).toBe(1);
  });

  it("refuses counts that are not whole numbers, naming the flag", () => {
    expect(() => applySpecFlags(base(), { replicas: "two" })).toThrow(expect.objectContaining({ code: "invalid_argument", message: "--replicas must be a whole number; got 'two'" }));
    expect(() => applySpecFlags(base(), { sequences: "-1" })).toThrow(expect.objectContaining({ code: "invalid_argument" }));
    expect(() => applySpecFlags(base(), { "gpu-layers": "1.5" })).toThrow(/--gpu-layers/);
    expect(() => applySpecFlags(base(), { weight: "" })).toThrow(/--weight/);
  });

  it("sets an upstream instance's connection pool: size, idle timeout, keep-alive on or off", () => {
    const upstream = create(ModelSpecSchema, { name: "gpt", engine: "openai", replicas: 1 });
    const out = applySpecFlags(upstream, { "pool-size": "4", "idle-timeout-ms": "1500", "keep-alive": "off" });
    expect(out.proxy).toMatchObject({ poolSize: 4, idleTimeoutMs: 1500, keepAlive: false });
    expect(applySpecFlags(out, { "keep-alive": "on" }).proxy?.keepAlive).toBe(true);
    // Unset, keep-alive is on (the engine's default); a later update without the flag keeps what was set.
    expect(applySpecFlags(upstream, {}).proxy?.keepAlive).toBeUndefined();
    expect(applySpecFlags(out, { "pool-size": "8" }).proxy).toMatchObject({ poolSize: 8, idleTimeoutMs: 1500, keepAlive: false });
    expect(() => applySpecFlags(upstream, { "keep-alive": "yes" })).toThrow(expect.objectContaining({ code: "invalid_argument", message: "--keep-alive must be on or off" }));
    expect(() => applySpecFlags(upstream, { "pool-size": "many" })).toThrow(/--pool-size must be a whole number/);
  });

  it("accepts only on or off for --embeddings", () => {
    expect(() => applySpecFlags(base(), { embeddings: "yes" })).toThrow(expect.objectContaining({ code: "invalid_argument", message: "--embeddings must be on or off" }));
  });

  it("replaces placement and labels with the key=value pairs given", () => {
    const out = applySpecFlags(base(), { placement: ["gpu=h100", "zone=eu-1"], label: ["tier=gold"] });
    expect(out.placement).toEqual({ gpu: "h100", zone: "eu-1" });
    expect(out.labels).toEqual({ tier: "gold" });
  });

  it("keeps everything after the first '=' as the value", () => {
    expect(applySpecFlags(base(), { label: ["note=a=b"] }).labels).toEqual({ note: "a=b" });
  });

  it("refuses a --placement or --label without key=value", () => {
    expect(() => applySpecFlags(base(), { placement: ["gpu"] })).toThrow(/--placement takes key=value/);
    expect(() => applySpecFlags(base(), { label: ["=x"] })).toThrow(/--label takes key=value/);
  });

  // Known bug: create(ModelSpecSchema, base) returns `base` itself (it already is a ModelSpec), so the flags
  // are written into the caller's spec too. Remove `.fails` once the base is cloned.
  it("does not change the base spec", () => {
    const spec = base();
    applySpecFlags(spec, { replicas: "9", sequences: "1" });
    expect(spec.replicas).toBe(2);
    expect(spec.llamaCpp?.sequences).toBe(4);
  });
});
