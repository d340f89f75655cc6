import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveSource } from "./resolveSource.js";

let modelDir: string;
let absolute: string;

beforeAll(() => {
  modelDir = mkdtempSync(join(tmpdir(), "smmf-resolve-"));
  mkdirSync(join(modelDir, "sub"));
  writeFileSync(join(modelDir, "sub", "tiny.gguf"), "GGUF");
  absolute = join(modelDir, "abs.gguf");
  writeFileSync(absolute, "GGUF");
});

afterAll(() => rmSync(modelDir, { recursive: true, force: true }));

describe("resolveSource", () => {
  it("takes an absolute path as it is", () => {
    expect(resolveSource(absolute, "/elsewhere", "w1")).toBe(absolute);
  });

  it("resolves a relative path against the model directory", () => {
    expect(resolveSource("sub/tiny.gguf", modelDir, "w1")).toBe(join(modelDir, "sub", "tiny.gguf"));
    expect(resolveSource("./sub/../abs.gguf", modelDir, "w1")).toBe(absolute);
  });

  it("turns a file:// URI into its path", () => {
    expect(resolveSource(pathToFileURL(absolute).href, "/elsewhere", "w1")).toBe(absolute);
  });

  it("refuses http:// sources with invalid_argument on 'source'", () => {
    expect(() => resolveSource("http://example.com/m.gguf", modelDir, "w1")).toThrow(
      expect.objectContaining({ code: "invalid_argument", param: "source", message: expect.stringContaining("http: sources are not supported") }),
    );
  });

  it("requires a source", () => {
    expect(() => resolveSource("", modelDir, "w1")).toThrow(expect.objectContaining({ code: "invalid_argument", param: "source" }));
  });

  it("refuses a file URI with a host", () => {
    expect(() => resolveSource("file://server/m.gguf", modelDir, "w1")).toThrow(expect.objectContaining({ code: "invalid_argument", param: "source" }));
  });

  it("says which path is missing on which worker when there is no such file", () => {
    const missing = join(modelDir, "nope.gguf");
    expect(() => resolveSource("nope.gguf", modelDir, "worker-7")).toThrow(
      expect.objectContaining({ code: "failed_precondition", param: "source", message: `model file ${missing} does not exist on worker worker-7` }),
    );
  });
});
