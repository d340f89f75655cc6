import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InstanceSpecSchema } from "../gen/smmf/v1/instance_pb.js";
import { createLogger } from "../telemetry/createLogger.js";
import { resolveUpstreamKey, upstreamKeySource } from "./resolveUpstreamKey.js";
import type { UpstreamCredential } from "./UpstreamCredential.js";

const ENV_KEY = "sk-unit-env-0123456789abcdef";
const FILE_KEY = "sk-unit-file-0123456789abcdef";
let dir: string;
let credentials: UpstreamCredential[];
const logLines: string[] = [];
const logger = createLogger("debug", "unit", (line) => void logLines.push(line));

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "smmf-cred-"));
  writeFileSync(join(dir, "key"), `${FILE_KEY}\n`);
  process.env.SMMF_UNIT_UPSTREAM_KEY = ENV_KEY;
  credentials = [
    { name: "env-cred", env: "SMMF_UNIT_UPSTREAM_KEY", allowedBaseUrls: ["http://127.0.0.1:8000/v1"] },
    { name: "file-cred", file: join(dir, "key"), allowedBaseUrls: ["https://*.openai.azure.com/openai/deployments/"] },
    { name: "missing", env: "SMMF_UNIT_NOT_SET", allowedBaseUrls: ["http://127.0.0.1:8000/v1"] },
  ];
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  delete process.env.SMMF_UNIT_UPSTREAM_KEY;
});

type Init = MessageInitShape<typeof InstanceSpecSchema>;
const spec = (init: Init) => create(InstanceSpecSchema, { model: "m", engine: "openai-compatible", ...init });
const resolveKey = (init: Init, baseUrl = "http://127.0.0.1:8000/v1") => resolveUpstreamKey(spec(init), baseUrl, { workerId: "w1", credentials, logger });

describe("resolveUpstreamKey", () => {
  it("reads a credential's key, from the environment or a file, for an allowed base URL, managed or not", () => {
    for (const managed of [true, false]) {
      expect(resolveKey({ managed, proxy: { credential: "env-cred" } })).toBe(ENV_KEY);
      expect(resolveKey({ managed, engine: "azure", proxy: { credential: "file-cred" } }, "https://acme.openai.azure.com/openai/deployments/gpt-4o")).toBe(FILE_KEY);
    }
  });

  it("refuses an unknown credential and a base URL the credential does not allow", () => {
    expect(() => resolveKey({ managed: true, proxy: { credential: "nope" } })).toThrow(
      expect.objectContaining({ code: "failed_precondition", param: "credential", message: "unknown upstream credential 'nope' on worker w1" }),
    );
    for (const base of ["http://127.0.0.1:8001/v1", "http://127.0.0.1:8000/v10", "https://127.0.0.1:8000/v1", "http://localhost:8000/v1"]) {
      expect(() => resolveKey({ managed: false, proxy: { credential: "env-cred" } }, base), base).toThrow(
        expect.objectContaining({ code: "failed_precondition", param: "base_url", message: `base_url ${base} is not allowed for credential 'env-cred' on worker w1` }),
      );
    }
  });

  it("a credential whose key cannot be read fails without saying where the key lives; the log says", () => {
    const err = (() => {
      try {
        resolveKey({ managed: true, proxy: { credential: "missing" } });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toMatchObject({ code: "failed_precondition", param: "credential" });
    expect(err?.message).not.toContain("SMMF_UNIT_NOT_SET");
    expect(logLines.some((l) => l.includes("SMMF_UNIT_NOT_SET"))).toBe(true);
  });

  it("the checks alone (the worker's estimate) read nothing: a credential with an unreadable key passes them", () => {
    const source = upstreamKeySource(spec({ managed: true, proxy: { credential: "missing" } }), "http://127.0.0.1:8000/v1", { workerId: "w1", credentials });
    expect(source).toMatchObject({ env: "SMMF_UNIT_NOT_SET", required: true });
    expect(() => upstreamKeySource(spec({ managed: true, proxy: { credential: "missing" } }), "http://127.0.0.1:9/v1", { workerId: "w1", credentials })).toThrow(
      expect.objectContaining({ code: "failed_precondition", param: "base_url" }),
    );
  });

  it("a managed spec may not name the worker's environment or files", () => {
    expect(() => resolveKey({ managed: true, proxy: { apiKeyEnv: "SMMF_UNIT_UPSTREAM_KEY" } })).toThrow(expect.objectContaining({ code: "failed_precondition", param: "api_key_env" }));
    expect(() => resolveKey({ managed: true, proxy: { apiKeyFile: join(dir, "key") } })).toThrow(expect.objectContaining({ code: "failed_precondition", param: "api_key_file" }));
  });

  it("a managed spec without a credential sends no key, and does not fall back to the preset's variable", () => {
    // (Kept in a variable: process.env would turn an absent value into the string "undefined".)
    const saved = process.env.OPENAI_API_KEY;
    process.env.OPENAI_API_KEY = "sk-should-never-be-read-0123456789";
    try {
      expect(resolveKey({ managed: true, engine: "vllm" })).toBe("");
      expect(() => resolveKey({ managed: true, engine: "openai" }, "http://127.0.0.1:9/v1")).toThrow(
        expect.objectContaining({ code: "failed_precondition", param: "credential", message: expect.stringMatching(/engine 'openai' needs an API key: name one of worker w1's upstream credentials/) }),
      );
    } finally {
      if (saved === undefined) delete process.env.OPENAI_API_KEY;
      else process.env.OPENAI_API_KEY = saved;
    }
  });

  it("a spec of the worker's own configuration keeps api_key_env and api_key_file", () => {
    expect(resolveKey({ managed: false, proxy: { apiKeyEnv: "SMMF_UNIT_UPSTREAM_KEY" } })).toBe(ENV_KEY);
    expect(resolveKey({ managed: false, proxy: { apiKeyFile: join(dir, "key") } })).toBe(FILE_KEY);
    expect(resolveKey({ managed: false, engine: "vllm" })).toBe("");
    expect(() => resolveKey({ managed: false, engine: "openai", proxy: { apiKeyEnv: "SMMF_UNIT_NOT_SET" } })).toThrow(expect.objectContaining({ code: "failed_precondition", param: "api_key_env" }));
  });
});
