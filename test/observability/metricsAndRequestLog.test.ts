import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import parsePrometheus, { type ParsedFamily } from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, startCliStream } from "../helpers/controlCluster.js";
import { promSamples, promValue, type PromSample } from "../helpers/promSamples.js";
import { waitFor } from "../helpers/distCluster.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// One embedded server with one sequence and no queue (so a second concurrent request gets 429), the request
// log on (capture full) in a temp folder. A known sequence of requests, then /metrics and the log are read.
let dir: string;
let server: TestServer;
const MODEL = "stories260K";
const ids: Record<string, string> = {};
const usage = { prompt: 0, completion: 0 };

/** The exposition, checked by a Prometheus text-format parser, as samples. */
async function metrics(): Promise<{ families: ParsedFamily[]; samples: PromSample[] }> {
  const res = await fetch(`${server.url}/metrics`);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  return { families: parsePrometheus(text), samples: promSamples(text) };
}

function sample(m: { samples: PromSample[] }, name: string, labels: Record<string, string>): number {
  return promValue(m.samples, name, labels);
}

async function logged(query = ""): Promise<{ data: Record<string, unknown>[]; next: string | null; has_more: boolean }> {
  const res = await fetch(`${server.url}/api/v1/requests${query}`);
  expect(res.status).toBe(200);
  return res.json() as Promise<{ data: Record<string, unknown>[]; next: string | null; has_more: boolean }>;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "smmf-obs-"));
  server = await startTestServer({ sequences: 1, queueSize: 0, requestLog: "on", requestLogCapture: "full", dataDir: dir });
  const openai = server.openai;

  // 1, 2: completions (non-streaming) — 200
  for (const key of ["c1", "c2"]) {
    const { data, response } = await openai.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 5, temperature: 0 }).withResponse();
    ids[key] = response.headers.get("x-request-id")!;
    expect(data.id).toBe(ids[key]);
    usage.prompt += data.usage!.prompt_tokens;
    usage.completion += data.usage!.completion_tokens;
  }
  // 3: a streaming chat — 200
  const stream = await openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 4, stream: true, stream_options: { include_usage: true } });
  for await (const chunk of stream) {
    ids.chat = chunk.id;
    if (chunk.usage) (usage.prompt += chunk.usage.prompt_tokens), (usage.completion += chunk.usage.completion_tokens);
  }
  // 4: embeddings — 200
  const emb = await openai.embeddings.create({ model: MODEL, input: "a cat" });
  usage.prompt += emb.usage.prompt_tokens;
  // 5: an unknown model — 404
  await expect(openai.completions.create({ model: "no-such-model", prompt: "x" })).rejects.toMatchObject({ status: 404 });
  // 6: a long stream holds the one sequence; 7: a request meanwhile gets 429; then 6 is aborted (499)
  const abort = new AbortController();
  const long = await openai.completions.create({ model: MODEL, prompt: "Once", max_tokens: 1500, stream: true }, { signal: abort.signal });
  const iterator = long[Symbol.asyncIterator]();
  await iterator.next();
  await iterator.next();
  await expect(openai.completions.create({ model: MODEL, prompt: "x", max_tokens: 2 })).rejects.toMatchObject({ status: 429 });
  abort.abort();
  await iterator.return?.();
  await waitFor("the aborted generation to stop", () => server.embedded.worker.worker.inFlight() === 0, 5_000);
  await waitFor("7 requests in the log", async () => (await logged()).data.length === 7, 5_000);
}, 60_000);

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("metrics", () => {
  it("count exactly the requests of a known sequence, by endpoint, model and status", async () => {
    const m = await metrics();
    const req = (endpoint: string, model: string, status: string) => sample(m, "smmf_gateway_requests_total", { endpoint, model, status });
    expect(req("completions", MODEL, "200")).toBe(2);
    expect(req("chat_completions", MODEL, "200")).toBe(1);
    expect(req("embeddings", MODEL, "200")).toBe(1);
    expect(req("completions", "unknown", "404")).toBe(1);
    expect(req("completions", MODEL, "429")).toBe(1);
    expect(req("completions", MODEL, "499")).toBe(1);
    expect(sample(m, "smmf_gateway_requests_total", {})).toBe(7);
  });

  it("count tokens and observe latencies: histogram counts match the requests", async () => {
    const m = await metrics();
    expect(sample(m, "smmf_gateway_prompt_tokens_total", { model: MODEL })).toBe(usage.prompt);
    expect(sample(m, "smmf_gateway_completion_tokens_total", { model: MODEL })).toBe(usage.completion);
    expect(usage.completion).toBe(5 + 5 + 4);
    // TTFT: every request that got a token (2 completions, the chat, the aborted stream).
    expect(sample(m, "smmf_gateway_time_to_first_token_seconds_count", { model: MODEL })).toBe(4);
    expect(sample(m, "smmf_gateway_time_to_first_token_seconds_bucket", { model: MODEL, le: "+Inf" })).toBe(4);
    expect(sample(m, "smmf_gateway_request_duration_seconds_count", { endpoint: "completions", model: MODEL })).toBe(4);
    expect(sample(m, "smmf_gateway_request_duration_seconds_count", { endpoint: "chat_completions", model: MODEL })).toBe(1);
    expect(sample(m, "smmf_gateway_request_duration_seconds_count", { endpoint: "embeddings", model: MODEL })).toBe(1);
    expect(sample(m, "smmf_gateway_request_duration_seconds_count", {})).toBe(7);
    expect(sample(m, "smmf_gateway_inter_token_latency_seconds_count", { model: MODEL })).toBe(4);
    expect(sample(m, "smmf_gateway_request_duration_seconds_sum", {})).toBeGreaterThan(0);
    expect(m.families.find((f) => f.name === "smmf_gateway_time_to_first_token_seconds")?.type).toBe("HISTOGRAM");
  });

  it("count the worker's generations by finish reason, and its in-flight gauge is back to 0", async () => {
    const m = await metrics();
    const gen = (reason: string) => sample(m, "smmf_worker_generations_total", { finish_reason: reason });
    expect(gen("length")).toBe(3);
    expect(gen("cancelled")).toBe(1);
    expect(sample(m, "smmf_worker_in_flight", { model: MODEL })).toBe(0);
    expect(sample(m, "smmf_gateway_requests_in_flight", { model: MODEL })).toBe(0);
    expect(sample(m, "smmf_instances", { model: MODEL, engine: "llama.cpp", state: "online" })).toBe(1);
    expect(sample(m, "smmf_gateway_retries_total", { model: MODEL })).toBe(0);
  });

  it("have help, types, base units and bounded labels; process metrics are there", async () => {
    const m = await metrics();
    for (const f of m.families.filter((f) => f.name.startsWith("smmf_"))) {
      expect(f.help.length, f.name).toBeGreaterThan(5);
      if (f.type === "COUNTER") expect(f.name, f.name).toMatch(/_total$/);
      if (f.type === "HISTOGRAM") expect(f.name, f.name).toMatch(/_seconds$/);
    }
    for (const s of m.samples) for (const value of Object.values(s.labels)) expect(value).not.toMatch(/Once upon|chatcmpl-|cmpl-|secret/);
    expect(m.families.some((f) => f.name === "process_cpu_user_seconds_total")).toBe(true);
    expect(m.families.some((f) => f.name === "nodejs_eventloop_lag_seconds")).toBe(true);
  });
});

describe("request log", () => {
  it("records every request of the run with its fields, newest first", async () => {
    const { data } = await logged();
    // By arrival: the 499 stream arrived before the request that got 429 while it ran.
    expect(data.map((r) => r.status)).toEqual([429, 499, 404, 200, 200, 200, 200]);
    const c1 = data.find((r) => r.id === ids.c1)!;
    expect(c1).toMatchObject({
      endpoint: "completions",
      model: MODEL,
      engine: "llama.cpp",
      stream: false,
      status: 200,
      errorCode: null,
      params: { max_tokens: 5, temperature: 0 },
      prompt: "Once upon a time",
      completionTokens: 5,
      retries: 0,
      feedback: null,
    });
    expect(c1.instance).toMatch(/^stories260K-/);
    expect(c1.output).toEqual(expect.any(String));
    expect((c1.output as string).length).toBeGreaterThan(0);
    expect(c1.latencyMs as number).toBeGreaterThan(0);
    expect(c1.ttftMs as number).toBeGreaterThan(0);
    expect(c1.latencyMs as number).toBeGreaterThanOrEqual(c1.ttftMs as number);
    const chat = data.find((r) => r.id === ids.chat)!;
    expect(chat).toMatchObject({ endpoint: "chat_completions", stream: true, completionTokens: 4 });
    expect(JSON.parse(chat.prompt as string)).toEqual([{ role: "user", content: "Hi" }]);
    const notFound = data.find((r) => r.status === 404)!;
    expect(notFound).toMatchObject({ model: "no-such-model", errorCode: "model_not_found", instance: null });
    expect(data.find((r) => r.status === 429)).toMatchObject({ errorCode: "resource_exhausted" });
    expect(data.find((r) => r.status === 499)).toMatchObject({ errorCode: "cancelled", stream: true });
    const embedding = data.find((r) => r.endpoint === "embeddings")!;
    expect(embedding).toMatchObject({ status: 200, output: null, completionTokens: 0 });
  });

  it("filters by model, status and time, and pages with a cursor", async () => {
    expect((await logged(`?model=${MODEL}`)).data).toHaveLength(6);
    expect((await logged("?status=200")).data).toHaveLength(4);
    expect((await logged(`?until=${Date.now() - 3_600_000}`)).data).toHaveLength(0);
    const first = await logged("?limit=3");
    expect(first.data).toHaveLength(3);
    expect(first.has_more).toBe(true);
    const second = await logged(`?limit=3&before=${first.next}`);
    const third = await logged(`?limit=3&before=${second.next}`);
    expect(third.has_more).toBe(false);
    const all = [...first.data, ...second.data, ...third.data].map((r) => r.id);
    expect(new Set(all).size).toBe(7);
    expect((await fetch(`${server.url}/api/v1/requests?limit=0`)).status).toBe(400);
    expect((await fetch(`${server.url}/api/v1/requests?before=garbage`)).status).toBe(400);
  });

  it("takes feedback on a request, shows it with the request, and counts it in metrics; unknown ids get 404", async () => {
    const post = (id: string, body: unknown) => fetch(`${server.url}/api/v1/requests/${id}/feedback`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const res = await post(ids.c1, { score: 1, comment: "nice story", label: "good" });
    expect(res.status).toBe(200);
    const got = (await (await fetch(`${server.url}/api/v1/requests/${ids.c1}`)).json()) as { feedback: { score: number; comment: string; label: string; time: number } };
    expect(got.feedback).toMatchObject({ score: 1, comment: "nice story", label: "good" });
    expect((await post(ids.c2, { score: -1 })).status).toBe(200);
    const m = await metrics();
    expect(sample(m, "smmf_feedback_total", { model: MODEL, sentiment: "positive" })).toBe(1);
    expect(sample(m, "smmf_feedback_total", { model: MODEL, sentiment: "negative" })).toBe(1);
    const missing = await post("chatcmpl-nope", { score: 1 });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe("not_found");
    expect((await post(ids.c1, { score: "great" })).status).toBe(400);
    expect((await fetch(`${server.url}/api/v1/requests/nope`)).status).toBe(404);
  });

  it("is shown by `smmf requests list|show|feedback`, as tables and as JSON", async () => {
    const url = `--url=${server.url}`;
    const list = await runCli(["requests", "list", url, "--json", "--status", "200"]);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { id: string }[]).map((r) => r.id)).toContain(ids.c1);
    const table = await runCli(["requests", "list", url, "--model", MODEL]);
    expect(table.stdout.split("\n")[0]).toMatch(/^TIME\s+ID\s+ENDPOINT\s+MODEL\s+STATUS/);
    expect(table.stdout).toContain(ids.c2);
    const show = await runCli(["requests", "show", ids.c1, url]);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/prompt:\s+Once upon a time/);
    expect(show.stdout).toMatch(/feedback:\s+1 \[good\] nice story/);
    const fb = await runCli(["requests", "feedback", ids.chat, "--score", "0.5", "--label", "ok", url, "--json"]);
    expect(fb.code, fb.stderr).toBe(0);
    expect(JSON.parse(fb.stdout).feedback).toMatchObject({ score: 0.5, label: "ok" });
    const unknown = await runCli(["requests", "show", "nope", url]);
    expect(unknown.code).toBe(3);
  });

  it("`smmf requests tail` prints requests as they finish", async () => {
    const tail = startCliStream(["requests", "tail", `--url=${server.url}`]);
    try {
      // Its readiness line (stderr) comes once the gateway has answered its first poll (the CLI may take
      // seconds to start on a busy machine): requests made from then on are shown.
      await tail.readyOn(/^following requests at \S+$/m);
      expect(tail.stderr()).toContain(`following requests at ${server.url}\n`);
      const { response } = await server.openai.completions.create({ model: MODEL, prompt: "Tail me", max_tokens: 2 }).withResponse();
      const id = response.headers.get("x-request-id")!;
      const line = await waitFor("the new request in the tail", () => tail.stdout().split("\n").find((l) => l.includes(id)), 10_000);
      expect(line.split(/\s+/)).toEqual(expect.arrayContaining([id, "completions", MODEL, "200"]));
      expect(line).toMatch(/\s\d+\/2\s/); // tokens in/out
      expect(tail.stdout()).not.toContain(ids.c1); // only requests from after it started
      // stdout: the table (its header, then rows), nothing else.
      const [header, ...rows] = tail.stdout().trimEnd().split("\n");
      expect(header).toMatch(/^TIME\s+ID\s+ENDPOINT/);
      expect(rows).toEqual([line]);
    } finally {
      await tail.stop();
    }
  });
});

describe("request log settings", () => {
  it("capture off keeps no prompt or output text", async () => {
    const d = mkdtempSync(join(tmpdir(), "smmf-obs-off-"));
    const s = await startTestServer({ requestLog: "on", requestLogCapture: "off", dataDir: d });
    try {
      const { response } = await s.openai.completions.create({ model: MODEL, prompt: "A secret prompt", max_tokens: 3 }).withResponse();
      const entry = (await (await fetch(`${s.url}/api/v1/requests/${response.headers.get("x-request-id")}`)).json()) as Record<string, unknown>;
      expect(entry).toMatchObject({ prompt: null, output: null, completionTokens: 3, status: 200 });
    } finally {
      await s.close();
      rmSync(d, { recursive: true, force: true });
    }
  });

  it("a request log that cannot be written does not fail requests; its records are counted as dropped", async () => {
    const s = await startTestServer({ requestLog: "on", dataDir: "/dev/null/smmf" });
    try {
      const r = await s.openai.completions.create({ model: MODEL, prompt: "Once", max_tokens: 3 });
      expect(r.usage?.completion_tokens).toBe(3);
      const res = await fetch(`${s.url}/api/v1/requests`);
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/request log is not available/);
      const text = await (await fetch(`${s.url}/metrics`)).text();
      expect(promValue(promSamples(text), "smmf_request_log_dropped_total")).toBe(1);
    } finally {
      await s.close();
    }
  });
});
