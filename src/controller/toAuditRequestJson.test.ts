import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { StartModelRequestSchema } from "../gen/smmf/v1/controller_pb.js";
import { AUDIT_REQUEST_MAX_CHARS, toAuditRequestJson } from "./toAuditRequestJson.js";

describe("toAuditRequestJson", () => {
  it("keeps the spec, key variable and file names, and header names; redacts header values and URL credentials", () => {
    const request = create(StartModelRequestSchema, {
      spec: {
        name: "up",
        engine: "openai-compatible",
        source: "https://user:hunter2@models.example/x.gguf",
        replicas: 2,
        proxy: { baseUrl: "http://gpu1:8000/v1", apiKeyEnv: "UPSTREAM_KEY", apiKeyFile: "/etc/smmf/key", headers: { "x-team": "sekrit-token" } },
      },
    });
    const json = toAuditRequestJson(StartModelRequestSchema, request);
    const parsed = JSON.parse(json);
    expect(parsed.spec).toMatchObject({ name: "up", replicas: 2, proxy: { baseUrl: "http://gpu1:8000/v1", apiKeyEnv: "UPSTREAM_KEY", apiKeyFile: "/etc/smmf/key", headers: { "x-team": "[redacted]" } } });
    expect(parsed.spec.source).toBe("https://redacted@models.example/x.gguf");
    expect(json).not.toMatch(/hunter2|sekrit/);
  });

  it("cuts a very long request, and says so", () => {
    const json = toAuditRequestJson(StartModelRequestSchema, create(StartModelRequestSchema, { spec: { name: "x", labels: { big: "a".repeat(20_000) } } }));
    expect(json.length).toBeLessThanOrEqual(AUDIT_REQUEST_MAX_CHARS + 10);
    expect(json.endsWith("…(cut)")).toBe(true);
  });
});
