import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/controlCluster.js";
import { InferenceService } from "../../src/gen/smmf/v1/inference_pb.js";
import { freePort, startSmmf, type SmmfProcess } from "../helpers/childProcess.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { testModelPath } from "../helpers/testModel.js";

// `smmf serve` with keys that have per-minute limits; bursts well inside one minute.
let dir: string;
let smmf: SmmfProcess;
let url: string;
const secrets: Record<string, string> = {};


async function createKey(name: string, ...flags: string[]): Promise<void> {
  const out = await runCli(["key", "create", name, "--bootstrap", "--data-dir", join(dir, "data"), ...flags]);
  expect(out.code, out.stderr).toBe(0);
  secrets[name] = /^smmf-k[0-9a-f]{12}-\S{43}$/m.exec(out.stdout)![0];
}

function complete(key: string, maxTokens = 4) {
  return fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key}` }, body: JSON.stringify({ model: "stories260K", prompt: "Once upon a time", max_tokens: maxTokens, temperature: 0 }) });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "smmf-limits-"));
  await createKey("ops", "--role", "reader");
  await createKey("burst", "--role", "inference", "--rpm", "5");
  await createKey("tokens", "--role", "inference", "--tpm", "40");
  const port = await freePort();
  smmf = await startSmmf(["serve", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--gpu", "off", "--threads", "1", "--data-dir", join(dir, "data"), "--log-level", "warn"], { timeoutMs: 60_000 });
  url = `http://127.0.0.1:${port}`;
}, 90_000);

afterAll(async () => {
  await smmf?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("per-key limits", () => {
  it("a burst over a key's requests per minute gets exactly the expected 429s, with Retry-After and OpenAI's rate-limit headers", async () => {
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push(await complete(secrets.burst));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    expect(answers.slice(0, 5).map((r) => r.headers.get("x-ratelimit-remaining-requests"))).toEqual(["4", "3", "2", "1", "0"]);
    expect(answers[0].headers.get("x-ratelimit-limit-requests")).toBe("5");
    expect(answers[0].headers.get("x-ratelimit-reset-requests")).toMatch(/^(\d+m)?\d+s$/);
    const refused = answers[5];
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    expect(((await refused.json()) as { error: { code: string; type: string; message: string } }).error).toMatchObject({ code: "rate_limit_exceeded", type: "rate_limit_error", message: expect.stringMatching(/'burst': 5 requests per minute/) });
    // gRPC calls count against the same key: RESOURCE_EXHAUSTED.
    const grpc = createClient(InferenceService, createGrpcTransport({ baseUrl: url }));
    const err = await grpc.embed({ model: "stories260K", inputs: ["x"] }, { headers: { authorization: `Bearer ${secrets.burst}` } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
  });

  it("tokens per minute count prompt and completion tokens of answered requests", async () => {
    let used = 0;
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await complete(secrets.tokens, 4);
      statuses.push(res.status);
      if (res.status !== 200) break;
      const body = (await res.json()) as { usage: { total_tokens: number } };
      expect(res.headers.get("x-ratelimit-limit-tokens")).toBe("40");
      expect(Number(res.headers.get("x-ratelimit-remaining-tokens"))).toBe(Math.max(0, 40 - used));
      used += body.usage.total_tokens;
    }
    // Admitted while the minute's tokens were under 40; the next one is refused.
    expect(statuses.at(-1)).toBe(429);
    expect(used).toBeGreaterThanOrEqual(40);
    expect(used - 40).toBeLessThan(40);
  });

  it("counts usage per key name: /metrics and `smmf key usage`", async () => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const samples = promSamples(text);
    expect(promValue(samples, "smmf_key_requests_total", { key: "burst", outcome: "admitted" })).toBe(5);
    expect(promValue(samples, "smmf_key_requests_total", { key: "burst", outcome: "rate_limited" })).toBe(4);
    expect(promValue(samples, "smmf_key_tokens_total", { key: "tokens", type: "completion" })).toBeGreaterThan(0);
    const out = await runCli(["key", "usage", "--url", url, "--api-key", secrets.ops, "--json"]);
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toContainEqual(expect.objectContaining({ key: "burst", admitted: 5, rateLimited: 4 }));
  });
});
