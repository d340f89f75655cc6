import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveSource } from "./resolveSource.js";

let root: string;
let modelDir: string;
let absolute: string;
/** A folder beside the model directory, with a GGUF file and a secret. */
let outside: string;
let secret: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "smmf-resolve-"));
  modelDir = join(root, "models");
  mkdirSync(join(modelDir, "sub"), { recursive: true });
  writeFileSync(join(modelDir, "sub", "tiny.gguf"), "GGUF....");
  absolute = join(modelDir, "abs.gguf");
  writeFileSync(absolute, "GGUF....");
  writeFileSync(join(modelDir, "notes.txt"), "not a model");
  outside = join(root, "outside");
  mkdirSync(outside);
  writeFileSync(join(outside, "other.gguf"), "GGUF....");
  secret = join(outside, "secret.txt");
  writeFileSync(secret, "password=hunter2");
  // Links inside the model directory: one to a file outside it, one to a folder outside it, one to a file inside it.
  symlinkSync(secret, join(modelDir, "link-out.gguf"));
  symlinkSync(outside, join(modelDir, "dir-out"));
  symlinkSync(absolute, join(modelDir, "link-in.gguf"));
  // A model directory named by a link: its files are found through it.
  symlinkSync(modelDir, join(root, "models-link"));
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

const notAllowed = (workerId: string) => expect.objectContaining({ code: "failed_precondition", param: "source", message: `'source' is not an allowed model source on worker ${workerId}` });

describe("resolveSource", () => {
  it("takes an absolute path inside the model directory", () => {
    expect(resolveSource(absolute, modelDir, "w1")).toBe(absolute);
  });

  it("resolves a relative path against the model directory", () => {
    expect(resolveSource("sub/tiny.gguf", modelDir, "w1")).toBe(join(modelDir, "sub", "tiny.gguf"));
    expect(resolveSource("./sub/../abs.gguf", modelDir, "w1")).toBe(absolute);
  });

  it("turns a file:// URI into its path", () => {
    expect(resolveSource(pathToFileURL(absolute).href, modelDir, "w1")).toBe(absolute);
  });

  it("follows links that stay inside, and returns the real path", () => {
    expect(resolveSource("link-in.gguf", modelDir, "w1")).toBe(absolute);
    expect(resolveSource("abs.gguf", join(root, "models-link"), "w1")).toBe(absolute);
  });

  it("refuses files outside the model directory: absolute, relative with '..', file:// URIs and links, all with one message", () => {
    for (const source of [
      "/etc/passwd",
      "../../../../../../etc/passwd",
      `../outside/other.gguf`,
      "file:///etc/passwd",
      secret,
      join(outside, "other.gguf"),
      pathToFileURL(secret).href,
      "link-out.gguf",
      "dir-out/secret.txt",
      "dir-out/other.gguf",
      `sub/${relative(join(modelDir, "sub"), "/etc/passwd")}`,
    ]) {
      expect(() => resolveSource(source, modelDir, "w1"), source).toThrow(notAllowed("w1"));
    }
  });

  it("answers a missing file exactly as a forbidden one: existence is not revealed", () => {
    const messages = ["nope.gguf", "/etc/passwd", "/etc/no-such-file", "../outside/secret.txt", "../outside/missing.txt"].map((source) => {
      try {
        resolveSource(source, modelDir, "worker-7");
      } catch (err) {
        return { code: (err as { code: string }).code, param: (err as { param: string }).param, message: (err as Error).message };
      }
      return undefined;
    });
    expect(new Set(messages.map((m) => JSON.stringify(m))).size).toBe(1);
    expect(messages[0]).toEqual({ code: "failed_precondition", param: "source", message: "'source' is not an allowed model source on worker worker-7" });
  });

  it("refuses the model directory itself and sub-folders: they are not files", () => {
    expect(() => resolveSource(modelDir, modelDir, "w1")).toThrow(notAllowed("w1"));
    expect(() => resolveSource("sub", modelDir, "w1")).toThrow(notAllowed("w1"));
  });

  it("allows files in the allowed folders, and single files listed there", () => {
    expect(resolveSource(join(outside, "other.gguf"), modelDir, "w1", [outside])).toBe(join(outside, "other.gguf"));
    expect(resolveSource("../outside/other.gguf", modelDir, "w1", [outside])).toBe(join(outside, "other.gguf"));
    expect(resolveSource("dir-out/other.gguf", modelDir, "w1", [outside])).toBe(join(outside, "other.gguf"));
    expect(resolveSource(join(outside, "other.gguf"), "/nonexistent-model-dir", "w1", [join(outside, "other.gguf")])).toBe(join(outside, "other.gguf"));
    // A listed file allows that file only; a folder's name as a prefix of another folder allows nothing there.
    expect(() => resolveSource(join(outside, "secret.txt"), modelDir, "w1", [join(outside, "other.gguf")])).toThrow(notAllowed("w1"));
    expect(() => resolveSource(join(root, "outside-2", "x.gguf"), modelDir, "w1", [outside])).toThrow(notAllowed("w1"));
    expect(() => resolveSource("/etc/passwd", modelDir, "w1", ["/nonexistent-dir"])).toThrow(notAllowed("w1"));
  });

  it("says 'not a GGUF file' for an allowed file that is not one, without quoting it", () => {
    expect(() => resolveSource("notes.txt", modelDir, "w1")).toThrow(
      expect.objectContaining({ code: "failed_precondition", param: "source", message: "'source' is not a GGUF file on worker w1" }),
    );
    expect(() => resolveSource(secret, modelDir, "w1", [outside])).toThrow(expect.objectContaining({ message: "'source' is not a GGUF file on worker w1" }));
  });

  it("answers an allowed path that is no regular file (a folder) as a forbidden one", () => {
    mkdirSync(join(modelDir, "folder.gguf"), { recursive: true });
    expect(() => resolveSource("folder.gguf", modelDir, "w1")).toThrow(notAllowed("w1"));
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
});
