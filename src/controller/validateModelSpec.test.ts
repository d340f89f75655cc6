import { describe, expect, it } from "vitest";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { ModelSpecSchema } from "../gen/smmf/v1/model_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { MAX_REPLICAS, validateModelSpec } from "./validateModelSpec.js";

type SpecInit = MessageInitShape<typeof ModelSpecSchema>;

const spec = (extra: SpecInit = {}) => create(ModelSpecSchema, { name: "qwen", source: "qwen.gguf", replicas: 1, ...extra });

/** The SmmfError validateModelSpec throws for the spec (fails the test if it throws nothing). */
function rejection(init: SpecInit): SmmfError {
  try {
    validateModelSpec(spec(init));
  } catch (err) {
    expect(err).toBeInstanceOf(SmmfError);
    return err as SmmfError;
  }
  throw new Error("validateModelSpec accepted the spec");
}

describe("validateModelSpec", () => {
  it("fills in the engine and the chat template", () => {
    const out = validateModelSpec(spec({ llamaCpp: { sequences: 4 } }));
    expect(out.engine).toBe("llama.cpp");
    expect(out.llamaCpp?.chatTemplate).toBe("auto");
    expect(out.llamaCpp?.sequences).toBe(4);
    expect(out.name).toBe("qwen");
  });

  it("keeps the values it was given", () => {
    const out = validateModelSpec(spec({ engine: "llama.cpp", llamaCpp: { chatTemplate: "fallback" }, replicas: MAX_REPLICAS, placement: { gpu: "a100" } }));
    expect(out.llamaCpp?.chatTemplate).toBe("fallback");
    expect(out.replicas).toBe(1000);
    expect(out.placement).toEqual({ gpu: "a100" });
  });

  it("requires a spec", () => {
    expect(() => validateModelSpec(undefined)).toThrow(expect.objectContaining({ code: "invalid_argument", param: "spec" }));
  });

  it("requires a name, calling it 'name'", () => {
    const err = rejection({ name: "" });
    expect(err).toMatchObject({ code: "invalid_argument", param: "name" });
    expect(err.message).toBe("'name' is required");
  });

  it("refuses a name with characters that cannot be a key or path segment", () => {
    expect(rejection({ name: "a/b" })).toMatchObject({ code: "invalid_argument", param: "name" });
    expect(rejection({ name: "-lead" })).toMatchObject({ code: "invalid_argument", param: "name" });
  });

  it("refuses an unknown engine", () => {
    const err = rejection({ engine: "tensorrt" });
    expect(err).toMatchObject({ code: "invalid_argument", param: "engine" });
    expect(err.message).toContain("'tensorrt'");
  });

  it("requires a source", () => {
    expect(rejection({ source: "" })).toMatchObject({ code: "invalid_argument", param: "source" });
  });

  it("accepts paths, file:// URIs and http(s) URLs without credentials, and refuses other schemes", () => {
    const err = rejection({ source: "s3://bucket/m.gguf" });
    expect(err).toMatchObject({ code: "invalid_argument", param: "source" });
    expect(err.message).toContain("s3: sources are not supported");
    expect(rejection({ source: "https://user:pw@example.com/m.gguf" }).message).toContain("must not carry credentials");
    expect(validateModelSpec(spec({ source: "https://example.com/m.gguf" })).source).toBe("https://example.com/m.gguf");
    expect(validateModelSpec(spec({ source: "file:///models/m.gguf" })).source).toBe("file:///models/m.gguf");
    expect(validateModelSpec(spec({ source: "/models/m.gguf" })).source).toBe("/models/m.gguf");
  });

  it("refuses more than 1000 replicas", () => {
    const err = rejection({ replicas: MAX_REPLICAS + 1 });
    expect(err).toMatchObject({ code: "invalid_argument", param: "replicas" });
    expect(err.message).toBe("'replicas' must be at most 1000; got 1001");
  });

  it("refuses more than 256 sequences", () => {
    expect(rejection({ llamaCpp: { sequences: 257 } })).toMatchObject({ code: "invalid_argument", param: "sequences" });
    expect(validateModelSpec(spec({ llamaCpp: { sequences: 256 } })).llamaCpp?.sequences).toBe(256);
  });

  it("refuses a chat template other than auto or fallback", () => {
    expect(rejection({ llamaCpp: { chatTemplate: "chatml" } })).toMatchObject({ code: "invalid_argument", param: "chat_template" });
  });

  it("refuses a bad label key, naming the map it is in", () => {
    expect(rejection({ labels: { "bad key": "x" } })).toMatchObject({ code: "invalid_argument", param: "labels" });
    expect(rejection({ placement: { "-gpu": "x" } })).toMatchObject({ code: "invalid_argument", param: "placement" });
    expect(rejection({ labels: { ok: "x".repeat(257) } })).toMatchObject({ code: "invalid_argument", param: "labels" });
  });

  it("refuses api_key_env and api_key_file from the API, pointing at credential", () => {
    const upstream = { engine: "openai-compatible", source: "", proxy: { baseUrl: "http://127.0.0.1:9/v1" } };
    for (const [field, proxy] of [
      ["api_key_env", { apiKeyEnv: "OPENAI_API_KEY" }],
      ["api_key_file", { apiKeyFile: "/etc/shadow" }],
    ] as const) {
      const err = rejection({ ...upstream, proxy: { ...upstream.proxy, ...proxy } });
      expect(err, field).toMatchObject({ code: "invalid_argument", param: field });
      expect(err.message, field).toMatch(new RegExp(`^'${field}' cannot be set through the API: name an upstream credential .* in 'credential'`));
      expect(err.message, field).not.toMatch(/OPENAI_API_KEY|shadow/);
    }
    // Whatever the engine: a llama.cpp spec carrying proxy settings is refused too.
    expect(rejection({ proxy: { apiKeyEnv: "HOME" } })).toMatchObject({ code: "invalid_argument", param: "api_key_env" });
  });

  it("accepts a credential name, and refuses a malformed one", () => {
    const out = validateModelSpec(spec({ engine: "openai", source: "", proxy: { credential: "openai-prod" } }));
    expect(out.proxy?.credential).toBe("openai-prod");
    expect(rejection({ engine: "openai", source: "", proxy: { credential: "../x" } })).toMatchObject({ code: "invalid_argument", param: "credential" });
    expect(rejection({ engine: "openai", source: "", proxy: { credential: "x".repeat(65) } })).toMatchObject({ code: "invalid_argument", param: "credential" });
  });

  // Known bug: create(ModelSpecSchema, input) returns `input` itself when it is already a ModelSpec message,
  // so the defaults are written into the caller's message. Remove `.fails` once the input is cloned.
  it("does not change the input message", () => {
    const input = spec({ llamaCpp: { sequences: 2 } });
    validateModelSpec(input);
    expect(input.engine).toBe("");
    expect(input.llamaCpp?.chatTemplate).toBe("");
  });
});
