import { describe, expect, it } from "vitest";
import { loadConfig } from "./loadConfig.js";
import { instanceSpecOf } from "./instanceSpecOf.js";

describe("instanceSpecOf: the engine of a GGUF model", () => {
  it("is llama.cpp by default, the `engine` setting's otherwise, and a model's own engine wins", () => {
    const engines = (flags: Record<string, string | string[]>, env: NodeJS.ProcessEnv = {}) => {
      const config = loadConfig({ "model-dir": "/models", ...flags }, env, "/");
      return config.models.map((m) => instanceSpecOf(config, m).engine);
    };
    expect(engines({ model: ["a=a.gguf"] })).toEqual(["llama.cpp"]);
    expect(engines({ model: ["a=a.gguf"], engine: "llama.cpp-server" })).toEqual(["llama.cpp-server"]);
    expect(engines({ model: ["a=a.gguf"] }, { SMMF_ENGINE: "llama.cpp-server" })).toEqual(["llama.cpp-server"]);
    // An upstream keeps its preset.
    expect(engines({ model: ["a=a.gguf"], proxy: ["b=vllm"], engine: "llama.cpp-server" })).toEqual(["llama.cpp-server", "vllm"]);
    expect(() => engines({ engine: "vllm" })).toThrow(/engine/);
  });
});
