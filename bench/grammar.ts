// The grammar part of `npm run bench` (alone: `node --import tsx bench/grammar.ts`): grammar-constrained
// generation beside free generation on the same model in the same `smmf serve` process, through the full
// gateway REST path, streamed: (a) free chat generation, (b) a forced tool call (`tools` with a JSON schema,
// `tool_choice: "required"`), (c) structured output (`response_format` json_schema, strict). Greedy decoding and
// a fixed max_tokens; the cases take turns within each round (in rotating order) at concurrency 1 and 4, so
// machine noise hits them alike. Reports completion tokens/s (from usage), the decode rate per stream, TTFT
// p50, and the ratios of (b) and (c) to (a). A fourth case, (d) free chat with a user message padded to the
// prompt length of (b) (whose prompt carries the template's function documentation), separates what the long
// prompt costs from what the tool call itself costs: the ratio (b)/(d).
import type { ChildProcess } from "node:child_process";
import http from "node:http";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { benchModelPath } from "./benchModel.js";
import { startServe } from "./startServe.js";
import { percentile, percentileRatio } from "./stats.js";

const ROUNDS = Number(process.env.BENCH_GRAMMAR_ROUNDS ?? 4);
const MAX_TOKENS = Number(process.env.BENCH_GRAMMAR_TOKENS ?? 128);
/** Requests per case and round: at concurrency 1 one after another, at 4 spread over 4 streams. */
const REQUESTS: Record<number, number> = { 1: Number(process.env.BENCH_GRAMMAR_REQUESTS_C1 ?? 3), 4: Number(process.env.BENCH_GRAMMAR_REQUESTS_C4 ?? 8) };
const CONCURRENCIES = [1, 4];
const SEQUENCES = 4;

/** The schema of (b)'s arguments and (c)'s answer: bounded strings, an enum, an integer, a short array. */
const SCHEMA = {
  type: "object",
  properties: {
    title: { type: "string", maxLength: 40 },
    summary: { type: "string", maxLength: 160 },
    mood: { type: "string", enum: ["happy", "sad", "scared", "curious"] },
    stars: { type: "integer" },
    tags: { type: "array", items: { type: "string", maxLength: 16 }, maxItems: 3 },
  },
  required: ["title", "summary", "mood", "stars", "tags"],
  additionalProperties: false,
};

const QUESTION = "Tell me a story about a little dog and write a report on it.";
const PADDING = " Once upon a time there was a little dog.";
const BASE = { model: "stories260K", messages: [{ role: "user", content: QUESTION }], max_tokens: MAX_TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } };
const CASES = {
  a: { name: "(a) free chat", body: JSON.stringify(BASE) },
  b: {
    name: "(b) forced tool call",
    body: JSON.stringify({ ...BASE, tools: [{ type: "function", function: { name: "file_report", description: "Files a report on the story.", parameters: SCHEMA } }], tool_choice: "required" }),
  },
  c: { name: "(c) json_schema strict", body: JSON.stringify({ ...BASE, response_format: { type: "json_schema", json_schema: { name: "report", schema: SCHEMA, strict: true } } }) },
  /** The body is set once (b)'s prompt length is known (see padTo). */
  d: { name: "(d) free, (b)'s prompt len", body: "" },
};
type CaseKey = keyof typeof CASES;
const KEYS = Object.keys(CASES) as CaseKey[];

/** Free chat with the question padded by `repeats` × PADDING. */
function paddedBody(repeats: number, extra: object = {}): string {
  return JSON.stringify({ ...BASE, messages: [{ role: "user", content: QUESTION + PADDING.repeat(repeats) }], ...extra });
}

/** prompt_tokens of a free chat padded `repeats` times (one non-streamed token). */
async function promptTokensOf(port: number, agent: http.Agent, repeats: number): Promise<number> {
  const body = paddedBody(repeats, { max_tokens: 1, stream: false, stream_options: undefined });
  const text = await new Promise<string>((resolveText, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: "/v1/chat/completions", method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
      let out = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (out += d));
      res.on("end", () => (res.statusCode === 200 ? resolveText(out) : reject(new Error(`HTTP ${res.statusCode}: ${out.slice(0, 300)}`))));
    });
    req.on("error", reject);
    req.end(body);
  });
  return (JSON.parse(text) as { usage: { prompt_tokens: number } }).usage.prompt_tokens;
}

/** The padding that brings a free chat's prompt to `target` tokens (within one padding's worth). */
async function padTo(port: number, agent: http.Agent, target: number): Promise<{ repeats: number; tokens: number }> {
  const base = await promptTokensOf(port, agent, 0);
  const perRepeat = ((await promptTokensOf(port, agent, 10)) - base) / 10;
  const repeats = Math.max(0, Math.round((target - base) / perRepeat));
  return { repeats, tokens: await promptTokensOf(port, agent, repeats) };
}

interface Sample {
  ttftMs: number;
  /** From the first generated piece (content or tool-call) to the last. */
  decodeMs: number;
  tokens: number;
  promptTokens: number;
  finishReason: string | null;
  /** The content, or the first tool call's arguments. */
  output: string;
}

interface Tally {
  tokens: number;
  promptTokens: number;
  ms: number;
  requests: number;
  ttft: number[];
  decodeRate: number[];
  /** (b), (c): answers whose output parses as a JSON object. */
  validJson: number;
  finishReasons: Map<string, number>;
  failures: number;
  firstFailure?: string;
}

interface ChunkJson {
  error?: { message?: string };
  usage?: { completion_tokens?: number; prompt_tokens?: number };
  choices?: { delta?: { content?: string | null; tool_calls?: { index: number; function?: { name?: string; arguments?: string } }[] }; finish_reason?: string | null }[];
}

/** One streamed chat completion; resolves with its timings, rejects on an HTTP or stream error. */
function streamOnce(port: number, agent: http.Agent, body: string): Promise<Sample> {
  return new Promise<Sample>((resolveSample, reject) => {
    const started = performance.now();
    let first = 0;
    let last = 0;
    let buffer = "";
    let raw = "";
    let tokens = -1;
    let promptTokens = 0;
    let finishReason: string | null = null;
    let content = "";
    let args = "";
    let streamError: string | undefined;
    const onEvent = (event: string) => {
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data) as ChunkJson;
        if (chunk.error) streamError = chunk.error.message ?? JSON.stringify(chunk.error);
        if (chunk.usage) {
          tokens = chunk.usage.completion_tokens ?? -1;
          promptTokens = chunk.usage.prompt_tokens ?? 0;
        }
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        const delta = choice.delta ?? {};
        const generated = (typeof delta.content === "string" && delta.content.length > 0) || (delta.tool_calls?.length ?? 0) > 0;
        if (typeof delta.content === "string") content += delta.content;
        for (const call of delta.tool_calls ?? []) if (call.index === 0) args += call.function?.arguments ?? "";
        if (generated) {
          const now = performance.now();
          if (!first) first = now;
          last = now;
        }
        if (choice.finish_reason) finishReason = choice.finish_reason;
      }
    };
    const req = http.request({ host: "127.0.0.1", port, path: "/v1/chat/completions", method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
      res.setEncoding("utf8");
      res.on("data", (text: string) => {
        if (res.statusCode !== 200) {
          raw += text;
          return;
        }
        buffer += text;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          onEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      });
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${raw.slice(0, 300)}`));
        if (streamError !== undefined) return reject(new Error(`stream error: ${streamError}`));
        if (tokens < 0 || !first) return reject(new Error(`no usage or no generated piece in the stream (finish ${finishReason})`));
        resolveSample({ ttftMs: first - started, decodeMs: last - first, tokens, promptTokens, finishReason, output: args || content });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

function newTally(): Tally {
  return { tokens: 0, promptTokens: 0, ms: 0, requests: 0, ttft: [], decodeRate: [], validJson: 0, finishReasons: new Map(), failures: 0 };
}

function isJsonObject(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

/** `requests` requests of one case, `concurrency` at a time, added to `tally` (failures counted, not thrown). */
async function phase(port: number, agent: http.Agent, key: CaseKey, concurrency: number, requests: number, tally: Tally): Promise<void> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < requests) {
        try {
          const s = await streamOnce(port, agent, CASES[key].body);
          tally.requests++;
          tally.tokens += s.tokens;
          tally.promptTokens += s.promptTokens;
          tally.ttft.push(s.ttftMs);
          if (s.tokens > 1 && s.decodeMs > 0) tally.decodeRate.push((s.tokens - 1) / (s.decodeMs / 1000));
          if (isJsonObject(s.output)) tally.validJson++;
          const reason = s.finishReason ?? "none";
          tally.finishReasons.set(reason, (tally.finishReasons.get(reason) ?? 0) + 1);
        } catch (err) {
          tally.failures++;
          tally.firstFailure ??= (err as Error).message;
        }
      }
    }),
  );
  tally.ms += performance.now() - started;
}

export async function benchGrammar(modelPath: string = benchModelPath()): Promise<void> {
  const args = ["--model", `stories260K=${modelPath}`, "--threads", "1", "--sequences", String(SEQUENCES), "--context-size", "2048", "--gpu", "off", "--log-level", "warn"];
  let child: ChildProcess | undefined;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const results = new Map<string, Tally>();
  const tally = (key: CaseKey, concurrency: number) => {
    let t = results.get(`${key}@${concurrency}`);
    if (!t) results.set(`${key}@${concurrency}`, (t = newTally()));
    return t;
  };
  const benchStarted = performance.now();
  try {
    const served = await startServe("grammar", args);
    child = served.child;
    const { port } = served;
    // Warm-up: every case on every sequence once (first use of a sequence allocates its cache). Failures here
    // are counted apart and reported below.
    const warmUp = newTally();
    const toolWarmUp = newTally();
    await phase(port, agent, "b", SEQUENCES, SEQUENCES, toolWarmUp);
    const toolPrompt = toolWarmUp.requests > 0 ? Math.round(toolWarmUp.promptTokens / toolWarmUp.requests) : 0;
    CASES.d.body = paddedBody((await padTo(port, agent, toolPrompt)).repeats);
    for (const key of KEYS) if (key !== "b") await phase(port, agent, key, SEQUENCES, SEQUENCES, warmUp);
    warmUp.failures += toolWarmUp.failures;
    warmUp.requests += toolWarmUp.requests;
    warmUp.firstFailure ??= toolWarmUp.firstFailure;
    for (let round = 0; round < ROUNDS; round++) {
      for (const concurrency of CONCURRENCIES) {
        if (concurrency === 1) {
          for (let i = 0; i < REQUESTS[1]; i++) {
            for (let k = 0; k < KEYS.length; k++) {
              const key = KEYS[(round + i + k) % KEYS.length];
              await phase(port, agent, key, 1, 1, tally(key, 1));
            }
          }
        } else {
          for (let k = 0; k < KEYS.length; k++) {
            const key = KEYS[(round + k) % KEYS.length];
            await phase(port, agent, key, concurrency, REQUESTS[concurrency], tally(key, concurrency));
          }
        }
      }
    }
    if (warmUp.failures > 0) console.log(`\n(grammar bench warm-up: ${warmUp.failures} of ${warmUp.failures + warmUp.requests} requests failed, first: ${warmUp.firstFailure})`);
  } finally {
    agent.destroy();
    child?.kill("SIGTERM");
  }

  const mean = (values: number[]) => (values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length);
  console.log(
    `\ngrammar-constrained vs free generation: stories260K through smmf serve (REST, SSE), chat, greedy, max_tokens ${MAX_TOKENS}, ${SEQUENCES} sequences, ` +
      `${ROUNDS} rounds × ${REQUESTS[1]} requests per case at concurrency 1 and ${REQUESTS[4]} at concurrency 4 (${((performance.now() - benchStarted) / 1000).toFixed(0)} s)`,
  );
  for (const concurrency of CONCURRENCIES) {
    const t = (key: CaseKey) => tally(key, concurrency);
    const rate = (key: CaseKey) => t(key).tokens / (t(key).ms / 1000);
    const decode = (key: CaseKey) => mean(t(key).decodeRate);
    console.log(`\nconcurrency ${concurrency}`);
    console.log("case                        tokens/s  decode tok/s/stream  TTFT p50 ms  tokens/req  prompt tok/req  JSON object  finish reasons");
    for (const key of KEYS) {
      const x = t(key);
      const reasons = [...x.finishReasons].map(([r, n]) => `${r} ${n}`).join(", ");
      const valid = key === "a" || key === "d" ? "-" : `${x.validJson}/${x.requests}`;
      console.log(
        `${CASES[key].name.padEnd(26)}${rate(key).toFixed(0).padStart(9)}${decode(key).toFixed(0).padStart(21)}${percentile(x.ttft, 50).toFixed(2).padStart(13)}` +
          `${(x.tokens / Math.max(1, x.requests)).toFixed(1).padStart(12)}${(x.promptTokens / Math.max(1, x.requests)).toFixed(0).padStart(16)}${valid.padStart(13)}  ${reasons}` +
          (x.failures > 0 ? `  FAILED ${x.failures}: ${x.firstFailure}` : ""),
      );
    }
    const ratio = (key: CaseKey, base: CaseKey) =>
      `${CASES[key].name.slice(0, 3)}/${CASES[base].name.slice(0, 3)}: tokens/s ${(rate(key) / rate(base)).toFixed(3)}   decode tok/s/stream ${(decode(key) / decode(base)).toFixed(3)}   TTFT p50 ${percentileRatio(t(key).ttft, t(base).ttft, 50)}`;
    console.log(ratio("b", "a"));
    console.log(ratio("c", "a"));
    console.log(`${ratio("b", "d")}   (the tool call at equal prompt length)`);
  }
}

// Run alone: `node --import tsx bench/grammar.ts`.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await benchGrammar();
  process.exit(0);
}
