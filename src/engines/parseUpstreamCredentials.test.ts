import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../config/loadConfig.js";
import { parseUpstreamCredentials } from "./parseUpstreamCredentials.js";

const dir = mkdtempSync(join(tmpdir(), "smmf-creds-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const parse = (value: unknown) => parseUpstreamCredentials(value, "smmf.config.json", "/etc/smmf");

describe("parseUpstreamCredentials", () => {
  it("reads names, env or file (relative to the config's folder) and allowed base URLs", () => {
    expect(
      parse([
        { name: "openai", env: "OPENAI_API_KEY", allowedBaseUrls: ["https://api.openai.com/v1"] },
        { name: "azure", file: "secrets/azure", allowedBaseUrls: ["https://*.openai.azure.com/openai/deployments/"] },
      ]),
    ).toEqual([
      { name: "openai", env: "OPENAI_API_KEY", allowedBaseUrls: ["https://api.openai.com/v1"] },
      { name: "azure", file: "/etc/smmf/secrets/azure", allowedBaseUrls: ["https://*.openai.azure.com/openai/deployments/"] },
    ]);
  });

  it("refuses a malformed list, naming the entry and the field", () => {
    const ok = { name: "a", env: "A_KEY", allowedBaseUrls: ["https://api.example.com/v1"] };
    const cases: [unknown, RegExp][] = [
      [{}, /must be an array/],
      [["x"], /upstreamCredentials\[0\] must be an object/],
      [[{ ...ok, name: "" }], /'name' must be/],
      [[ok, { ...ok }], /upstreamCredentials\[1\] \('a'\): the name 'a' is used twice/],
      [[{ name: "a", allowedBaseUrls: ok.allowedBaseUrls }], /exactly one of 'env'.*and 'file'/],
      [[{ ...ok, file: "/k" }], /exactly one of 'env'.*and 'file'/],
      [[{ ...ok, env: "NOT A NAME" }], /'env' must be an environment variable name/],
      [[{ name: "a", file: "", allowedBaseUrls: ok.allowedBaseUrls }], /'file' must be a path/],
      [[{ ...ok, allowedBaseUrls: [] }], /'allowedBaseUrls' must be a non-empty array/],
      [[{ ...ok, allowedBaseUrls: "https://x" }], /'allowedBaseUrls' must be a non-empty array/],
      [[{ ...ok, allowedBaseUrls: ["https://a.*.example.com"] }], /leftmost label/],
      [[{ ...ok, allowedBaseURLs: ["https://x"] }], /unknown key 'allowedBaseURLs'/],
    ];
    for (const [value, why] of cases) {
      expect(() => parse(value), JSON.stringify(value)).toThrow(expect.objectContaining({ code: "invalid_argument", message: expect.stringMatching(why) }));
    }
  });

  it("comes from the config file (default: none)", () => {
    const path = join(dir, "smmf.config.json");
    writeFileSync(path, JSON.stringify({ upstreamCredentials: [{ name: "local", file: "key.txt", allowedBaseUrls: ["http://127.0.0.1:8000/v1"] }], models: [{ name: "m", engine: "vllm", credential: "local" }] }));
    const config = loadConfig({ config: path }, {}, dir);
    expect(config.upstreamCredentials).toEqual([{ name: "local", file: join(dir, "key.txt"), allowedBaseUrls: ["http://127.0.0.1:8000/v1"] }]);
    expect(config.models[0].credential).toBe("local");
    expect(loadConfig({}, {}, dir + "/nowhere").upstreamCredentials).toEqual([]);
    writeFileSync(path, JSON.stringify({ upstreamCredentials: [{ name: "x", env: "X" }] }));
    expect(() => loadConfig({ config: path }, {}, dir)).toThrow(/allowedBaseUrls/);
  });
});
