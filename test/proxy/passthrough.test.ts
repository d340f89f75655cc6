import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startScriptedUpstream, type ScriptedUpstream } from "../helpers/scriptedUpstream.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

type ChatCompletion = OpenAI.Chat.Completions.ChatCompletion;
type ChatCompletionChunk = OpenAI.Chat.Completions.ChatCompletionChunk;
type ChatParams = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;
type Json = Record<string, unknown>;

// One gateway (SMMF, embedded in this process) serves:
// - "scripted": an openai-compatible upstream engine whose upstream is a scripted loopback server, which
//   records each request body and answers with the OpenAI-format stream a test gives it;
// - "scripted-ollama": the same upstream under the ollama preset (which refuses n > 1);
// - "relay": an openai-compatible upstream engine whose upstream is a second SMMF serving the real test model.
let up: ScriptedUpstream;
let inner: TestServer;
let gateway: TestServer;
let openai: OpenAI;

beforeAll(async () => {
  up = await startScriptedUpstream();
  inner = await startTestServer();
  gateway = await startTestServer({
    // Each upstream chunk goes to the client as it comes (no batching of deltas), so that pieces can be compared.
    streamIntervalMs: 0,
    models: [
      { name: "scripted", engine: "openai-compatible", file: "", baseUrl: up.url, upstreamModel: "up-model" },
      { name: "scripted-ollama", engine: "ollama", file: "", baseUrl: up.url, upstreamModel: "up-model" },
      { name: "relay", engine: "openai-compatible", file: "", baseUrl: `${inner.url}/v1`, upstreamModel: "stories260K" },
    ],
  });
  openai = gateway.openai;
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await inner?.close();
  await up?.close();
});

// ---- OpenAI-format stream chunks, as an upstream sends them ----

const chunk = (choices: object[], extra: object = {}) => ({ id: "chatcmpl-up", object: "chat.completion.chunk", created: 1_700_000_000, model: "up-model", choices, ...extra });
const choice = (index: number, delta: object, finish: string | null = null, logprobs: object | null = null) => ({ index, delta, logprobs, finish_reason: finish });
const usage = (prompt: number, completion: number) => chunk([], { usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } });
const bytes = (s: string) => [...Buffer.from(s, "utf8")];
/** A logprobs entry of a chat chunk: the token and two alternatives. */
const lp = (token: string, logprob: number, alt: string, altLogprob: number) => ({
  token,
  logprob,
  bytes: bytes(token),
  top_logprobs: [
    { token, logprob, bytes: bytes(token) },
    { token: alt, logprob: altLogprob, bytes: bytes(alt) },
  ],
});

/** Two parallel tool calls, id and name first, arguments in pieces. */
const TOOL_CALLS = [
  chunk([choice(0, { role: "assistant", content: null, tool_calls: [{ index: 0, id: "call_w1", type: "function", function: { name: "get_weather", arguments: "" } }], refusal: null })]),
  chunk([choice(0, { tool_calls: [{ index: 0, function: { arguments: '{"ci' } }] })]),
  chunk([choice(0, { tool_calls: [{ index: 0, function: { arguments: 'ty":"Oslo",' } }] })]),
  chunk([choice(0, { tool_calls: [{ index: 0, function: { arguments: '"unit":"c"}' } }] })]),
  chunk([choice(0, { tool_calls: [{ index: 1, id: "call_t2", type: "function", function: { name: "get_time", arguments: "" } }] })]),
  chunk([choice(0, { tool_calls: [{ index: 1, function: { arguments: '{"tz":"Europe/Oslo"}' } }] })]),
  chunk([choice(0, {}, "tool_calls")]),
  usage(57, 6),
];

/** Content with logprobs (a non-ASCII token among them). */
const LOGPROBS = [
  chunk([choice(0, { role: "assistant", content: "" })]),
  chunk([choice(0, { content: "Hello" }, null, { content: [lp("Hello", -0.125, "Hi", -2.5)], refusal: null })]),
  chunk([choice(0, { content: " café" }, null, { content: [lp(" café", -0.75, " bar", -1.0625)], refusal: null })]),
  chunk([choice(0, { content: "!" }, null, { content: [lp("!", -0.015625, ".", -4.25)], refusal: null })]),
  chunk([choice(0, {}, "stop")]),
  usage(9, 3),
];

const REFUSAL = [
  chunk([choice(0, { role: "assistant", content: null, refusal: "" })]),
  chunk([choice(0, { refusal: "I'm sorry, " })]),
  chunk([choice(0, { refusal: "I can't help with that." })]),
  chunk([choice(0, {}, "stop")]),
  usage(11, 2),
];

const CONTENT_FILTER = [
  chunk([choice(0, { role: "assistant", content: "" })]),
  chunk([choice(0, { content: "The" })]),
  chunk([choice(0, { content: " answer" })]),
  chunk([choice(0, {}, "content_filter")]),
  usage(8, 2),
];

/** n = 2: interleaved choices, each with its logprobs and its own finish reason. */
const TWO_CHOICES = [
  chunk([choice(0, { role: "assistant", content: "" }), choice(1, { role: "assistant", content: "" })]),
  chunk([choice(1, { content: "Blue" }, null, { content: [lp("Blue", -0.5, "Red", -1)] })]),
  chunk([choice(0, { content: "Red" }, null, { content: [lp("Red", -0.25, "Blue", -1.5)] })]),
  chunk([choice(0, { content: " fox" }, null, { content: [lp(" fox", -0.375, " dog", -1.25)] })]),
  chunk([choice(1, { content: " whale" }, null, { content: [lp(" whale", -1.75, " fish", -2)] })]),
  chunk([choice(0, {}, "stop")]),
  chunk([choice(1, { content: " song" }, null, { content: [lp(" song", -0.625, " sings", -0.875)] })]),
  chunk([choice(1, {}, "length")]),
  usage(10, 5),
];

// ---- What a stream of chunks amounts to, per choice (as OpenAI's SDKs assemble it) ----

interface Assembled {
  content: string | null;
  refusal: string | null;
  tool_calls?: { id: string; type: string; function: { name: string; arguments: string } }[];
  logprobs: unknown[] | null;
  finish_reason: string | null;
}

function assemble(chunks: readonly object[]): Assembled[] {
  const out: Assembled[] = [];
  for (const c of chunks as ChatCompletionChunk[]) {
    for (const ch of c.choices ?? []) {
      const a = (out[ch.index] ??= { content: null, refusal: null, logprobs: null, finish_reason: null });
      const d = ch.delta ?? {};
      if (d.content) a.content = (a.content ?? "") + d.content;
      if (d.refusal) a.refusal = (a.refusal ?? "") + d.refusal;
      for (const tc of d.tool_calls ?? []) {
        const call = ((a.tool_calls ??= [])[tc.index] ??= { id: "", type: "function", function: { name: "", arguments: "" } });
        if (tc.id) call.id = tc.id;
        if (tc.function?.name) call.function.name = tc.function.name;
        if (tc.function?.arguments) call.function.arguments += tc.function.arguments;
      }
      if (ch.logprobs?.content?.length) a.logprobs = [...(a.logprobs ?? []), ...ch.logprobs.content];
      if (ch.finish_reason) a.finish_reason = ch.finish_reason;
    }
  }
  return out;
}

/** A non-streamed answer in the same terms. */
function choicesOf(completion: ChatCompletion): Assembled[] {
  return [...completion.choices]
    .sort((a, b) => a.index - b.index)
    .map((ch) => ({
      content: ch.message.content || null,
      refusal: ch.message.refusal ?? null,
      ...(ch.message.tool_calls?.length
        ? {
            tool_calls: ch.message.tool_calls.map((t) => {
              if (t.type !== "function") throw new Error(`unexpected tool call type ${t.type}`);
              return { id: t.id, type: t.type, function: { name: t.function.name, arguments: t.function.arguments } };
            }),
          }
        : {}),
      logprobs: ch.logprobs?.content?.length ? ch.logprobs.content : null,
      finish_reason: ch.finish_reason,
    }));
}

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const out: ChatCompletionChunk[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

/** The three ways a client reads an answer: plain, the SDK's stream helper, and raw stream iteration. */
async function allThreeWays(params: ChatParams, expected: readonly object[]): Promise<void> {
  const want = assemble(expected);
  const upstreamUsage = (expected.at(-1) as { usage: Json }).usage;

  const plain = await openai.chat.completions.create(params);
  expect(plain.model).toBe(params.model);
  expect(choicesOf(plain)).toEqual(want);
  expect(plain.usage).toMatchObject(upstreamUsage);

  const { stream: _stream, ...streamParams } = params;
  const helper = await openai.chat.completions.stream(streamParams).finalChatCompletion();
  expect(choicesOf(helper)).toEqual(want);

  const chunks = await collect(await openai.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } }));
  expect(assemble(chunks)).toEqual(want);
  expect(chunks.find((c) => c.usage)?.usage).toMatchObject(upstreamUsage);
  // Each tool call's id and name come once, in its first piece; its arguments in pieces, as the upstream sent them.
  for (const [i, w] of want.entries()) {
    for (const [k, call] of (w.tool_calls ?? []).entries()) {
      const pieces = chunks.flatMap((c) => c.choices.filter((ch) => ch.index === i).flatMap((ch) => (ch.delta.tool_calls ?? []).filter((t) => t.index === k)));
      expect(pieces.filter((p) => p.id).map((p) => p.id)).toEqual([call.id]);
      expect(pieces[0]).toMatchObject({ id: call.id, function: { name: call.function.name } });
      expect(pieces.filter((p) => p.function?.arguments).length).toBeGreaterThan(call.id === "call_w1" ? 2 : 0);
    }
  }
}

const WEATHER_TOOL = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" }, unit: { type: "string", enum: ["c", "f"] } }, required: ["city", "unit"], additionalProperties: false },
    strict: true,
  },
};
const TIME_TOOL = { type: "function" as const, function: { name: "get_time", parameters: { type: "object", properties: { tz: { type: "string" } } } } };

/** A history with an assistant tool call, its tool result, and named messages. */
const HISTORY: ChatParams["messages"] = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "What's the weather in Bergen?", name: "ann" },
  { role: "assistant", content: null, tool_calls: [{ id: "call_b0", type: "function", function: { name: "get_weather", arguments: '{"city":"Bergen","unit":"c"}' } }] },
  { role: "tool", tool_call_id: "call_b0", content: '{"temp":7,"sky":"rain"}' },
  { role: "assistant", content: "7 °C and rain in Bergen." },
  { role: "user", content: "And in Oslo, with the local time?" },
];

describe("passthrough to an OpenAI-compatible upstream: what the upstream receives", () => {
  it("tools, tool_choice, parallel_tool_calls, response_format, logprobs, n, tool history and unknown fields arrive as the client sent them", async () => {
    up.script({ chunks: TWO_CHOICES });
    const sent = {
      messages: HISTORY,
      tools: [WEATHER_TOOL, TIME_TOOL],
      tool_choice: "required",
      parallel_tool_calls: true,
      response_format: { type: "json_schema", json_schema: { name: "answer", schema: { type: "object", properties: { text: { type: "string" } }, required: ["text"], additionalProperties: false }, strict: true } },
      logprobs: true,
      top_logprobs: 2,
      n: 2,
      max_tokens: 64,
      temperature: 0.5,
      seed: 11,
      user: "user-7",
      metadata: { team: "agents", run: "42" },
      repetition_penalty: 1.05,
      logit_bias: { "50256": -100 },
    };
    for (const stream of [false, true]) {
      const before = up.requests.length;
      if (stream) await collect(await openai.chat.completions.create({ model: "scripted", ...sent, stream: true } as unknown as OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming));
      else await openai.chat.completions.create({ model: "scripted", ...sent } as unknown as ChatParams);
      expect(up.requests.length).toBe(before + 1);
      const { path, body } = up.last();
      expect(path).toBe("/v1/chat/completions");
      expect(body).toMatchObject({ model: "up-model", stream: true, stream_options: { include_usage: true } });
      for (const [field, value] of Object.entries(sent)) expect([field, body[field]]).toEqual([field, value]);
    }
  });

  it("each tool_choice: none, auto, required, a named function", async () => {
    up.script({ chunks: CONTENT_FILTER });
    for (const toolChoice of ["none", "auto", "required", { type: "function", function: { name: "get_time" } }] as const) {
      await openai.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "time?" }], tools: [TIME_TOOL], tool_choice: toolChoice });
      expect(up.last().body.tool_choice).toEqual(toolChoice);
      expect(up.last().body.tools).toEqual([TIME_TOOL]);
    }
    // Nothing the client did not send.
    await openai.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "hi" }] });
    for (const field of ["tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs", "user"]) expect(up.last().body).not.toHaveProperty(field);
  });

  it("response_format json_object", async () => {
    up.script({ chunks: CONTENT_FILTER });
    await openai.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "json please" }], response_format: { type: "json_object" } });
    expect(up.last().body.response_format).toEqual({ type: "json_object" });
  });

  it("response_format text", async () => {
    up.script({ chunks: CONTENT_FILTER });
    await openai.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "plain please" }], response_format: { type: "text" } });
    expect(up.last().body.response_format).toEqual({ type: "text" });
  });

  it("completions: logprobs as an integer, suffix and user as sent; the legacy logprobs come back unchanged", async () => {
    const legacy = (text: string, offset: number, logprob: number, alt: string, altLogprob: number) => ({
      id: "cmpl-up",
      object: "text_completion",
      created: 1_700_000_000,
      model: "up-model",
      choices: [{ index: 0, text, logprobs: { tokens: [text], token_logprobs: [logprob], top_logprobs: [{ [text]: logprob, [alt]: altLogprob }], text_offset: [offset] }, finish_reason: null }],
    });
    const chunks = [
      legacy(" jumps", 9, -0.5, " runs", -1.25),
      legacy(" over", 15, -0.0625, " past", -3),
      legacy(" é", 20, -2.5, " a", -2.75),
      { id: "cmpl-up", object: "text_completion", created: 1, model: "up-model", choices: [{ index: 0, text: "", logprobs: null, finish_reason: "length" }] },
      { id: "cmpl-up", object: "text_completion", created: 1, model: "up-model", choices: [], usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 } },
    ];
    up.script({ chunks });
    const sent = { prompt: "The fox", max_tokens: 3, logprobs: 2, suffix: " THE END", user: "user-9" };
    const plain = await openai.completions.create({ model: "scripted", ...sent });
    expect(up.last().path).toBe("/v1/completions");
    expect(up.last().body).toMatchObject({ model: "up-model", stream: true, ...sent });
    expect(plain.choices[0].text).toBe(" jumps over é");
    expect(plain.choices[0].finish_reason).toBe("length");
    expect(plain.choices[0].logprobs).toMatchObject({
      tokens: [" jumps", " over", " é"],
      token_logprobs: [-0.5, -0.0625, -2.5],
      top_logprobs: [
        { " jumps": -0.5, " runs": -1.25 },
        { " over": -0.0625, " past": -3 },
        { " é": -2.5, " a": -2.75 },
      ],
    });
    expect(plain.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 });

    let text = "";
    const tokens: string[] = [];
    const tokenLogprobs: (number | null)[] = [];
    for await (const c of await openai.completions.create({ model: "scripted", ...sent, stream: true })) {
      text += c.choices[0]?.text ?? "";
      tokens.push(...(c.choices[0]?.logprobs?.tokens ?? []));
      tokenLogprobs.push(...(c.choices[0]?.logprobs?.token_logprobs ?? []));
    }
    expect(text).toBe(" jumps over é");
    expect(tokens).toEqual([" jumps", " over", " é"]);
    expect(tokenLogprobs).toEqual([-0.5, -0.0625, -2.5]);
  });

  it("a preset whose upstream does not honour a field: n > 1 to Ollama is refused naming 'n', before anything goes upstream; n 1 is not sent", async () => {
    up.script({ chunks: CONTENT_FILTER });
    const before = up.requests.length;
    const err = (await openai.chat.completions.create({ model: "scripted-ollama", messages: [{ role: "user", content: "hi" }], n: 2 }).catch((e: unknown) => e)) as { status: number; param: string; message: string };
    expect(err).toMatchObject({ status: 400, param: "n" });
    expect(err.message).toMatch(/'n' is not supported by the ollama upstream/);
    expect(up.requests.length).toBe(before);
    await openai.chat.completions.create({ model: "scripted-ollama", messages: [{ role: "user", content: "hi" }], n: 1 });
    expect(up.last().body).not.toHaveProperty("n");
  });
});

describe("passthrough from an OpenAI-compatible upstream: what the client receives equals what the upstream sent", () => {
  const ask = (extra: Partial<ChatParams> = {}): ChatParams => ({ model: "scripted", messages: [{ role: "user", content: "go" }], ...extra });

  it("parallel tool calls (ids, names, arguments in pieces) with finish_reason tool_calls", async () => {
    up.script({ chunks: TOOL_CALLS });
    await allThreeWays(ask({ tools: [WEATHER_TOOL, TIME_TOOL], parallel_tool_calls: true }), TOOL_CALLS);
    const answer = await openai.chat.completions.create(ask({ tools: [WEATHER_TOOL, TIME_TOOL] }));
    expect(answer.choices[0].finish_reason).toBe("tool_calls");
    // As OpenAI answers a message that only calls tools.
    expect(answer.choices[0].message.content).toBeNull();
    expect(answer.choices[0].message.tool_calls).toMatchObject([
      { id: "call_w1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo","unit":"c"}' } },
      { id: "call_t2", type: "function", function: { name: "get_time", arguments: '{"tz":"Europe/Oslo"}' } },
    ]);
  });

  it("logprobs content entries: token, logprob, bytes, top_logprobs", async () => {
    up.script({ chunks: LOGPROBS });
    await allThreeWays(ask({ logprobs: true, top_logprobs: 2 }), LOGPROBS);
    const answer = await openai.chat.completions.create(ask({ logprobs: true, top_logprobs: 2 }));
    expect(answer.choices[0].message.content).toBe("Hello café!");
    expect(answer.choices[0].logprobs?.content?.map((e) => e.token)).toEqual(["Hello", " café", "!"]);
    expect(answer.choices[0].logprobs?.content?.[1].bytes).toEqual(bytes(" café"));
  });

  it("a refusal", async () => {
    up.script({ chunks: REFUSAL });
    await allThreeWays(ask(), REFUSAL);
    const answer = await openai.chat.completions.create(ask());
    expect(answer.choices[0].message.refusal).toBe("I'm sorry, I can't help with that.");
  });

  it("finish_reason content_filter", async () => {
    up.script({ chunks: CONTENT_FILTER });
    await allThreeWays(ask(), CONTENT_FILTER);
  });

  it("n = 2: two choices, each with its content, logprobs and finish reason", async () => {
    up.script({ chunks: TWO_CHOICES });
    await allThreeWays(ask({ n: 2, logprobs: true, top_logprobs: 2 }), TWO_CHOICES);
    const answer = await openai.chat.completions.create(ask({ n: 2, logprobs: true, top_logprobs: 2 }));
    expect(answer.choices.map((c) => [c.index, c.message.content, c.finish_reason])).toEqual([
      [0, "Red fox", "stop"],
      [1, "Blue whale song", "length"],
    ]);
  });
});

describe("a second SMMF as the upstream, serving the real model", () => {
  const messages: ChatParams["messages"] = [{ role: "user", content: "Once upon a time" }];

  it("n = 2 works through both, plain and streamed, with the inner SMMF's answers and usage", async () => {
    const request = { messages, max_tokens: 8, temperature: 0, n: 2 };
    const direct = await inner.openai.chat.completions.create({ model: "stories260K", ...request });
    expect(direct.choices).toHaveLength(2);
    const relayed = await openai.chat.completions.create({ model: "relay", ...request });
    const summary = (c: ChatCompletion) => [...c.choices].sort((a, b) => a.index - b.index).map((ch) => [ch.index, ch.message.content, ch.finish_reason]);
    expect(summary(relayed)).toEqual(summary(direct));
    expect(relayed.usage).toMatchObject({ prompt_tokens: direct.usage!.prompt_tokens, completion_tokens: direct.usage!.completion_tokens, total_tokens: direct.usage!.total_tokens });

    const chunks = await collect(await openai.chat.completions.create({ model: "relay", ...request, stream: true, stream_options: { include_usage: true } }));
    expect(assemble(chunks).map((a, i) => [i, a.content, a.finish_reason])).toEqual(summary(direct));
    expect(chunks.find((c) => c.usage)?.usage).toMatchObject({ completion_tokens: direct.usage!.completion_tokens });
  });

  it("chat logprobs come back equal to the inner SMMF's own: tokens, logprobs, bytes, alternatives", async () => {
    const request = { messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3 };
    const direct = await inner.openai.chat.completions.create({ model: "stories260K", ...request });
    const want = direct.choices[0].logprobs?.content;
    expect(want?.length).toBeGreaterThan(0);
    const relayed = await openai.chat.completions.create({ model: "relay", ...request });
    expect(relayed.choices[0].message.content).toBe(direct.choices[0].message.content);
    expect(relayed.choices[0].logprobs?.content).toEqual(want);
    const chunks = await collect(await openai.chat.completions.create({ model: "relay", ...request, stream: true }));
    expect(assemble(chunks)[0].logprobs).toEqual(want);
  });

  it("completions logprobs (the legacy shape) come back equal to the inner SMMF's own", async () => {
    const request = { prompt: "The little dog", max_tokens: 6, temperature: 0, logprobs: 2 };
    const direct = await inner.openai.completions.create({ model: "stories260K", ...request });
    const want = direct.choices[0].logprobs;
    expect(want?.tokens?.length).toBeGreaterThan(0);
    const relayed = await openai.completions.create({ model: "relay", ...request });
    expect(relayed.choices[0].text).toBe(direct.choices[0].text);
    // The inner SMMF reuses the prompt it just evaluated (prefix cache): the same tokens, and log-probabilities
    // equal to within 1e-3 (a cached prompt's last token is evaluated alone, not in a batch: float rounding).
    const got = relayed.choices[0].logprobs!;
    expect(got.tokens).toEqual(want!.tokens);
    const close = (a: (number | null)[] | null | undefined, b: (number | null)[] | null | undefined) => {
      expect(a?.length).toBe(b?.length);
      a?.forEach((v, i) => expect(v).toBeCloseTo(b![i]!, 3));
    };
    close(got.token_logprobs, want!.token_logprobs);
    expect(got.top_logprobs?.map((top) => Object.keys(top))).toEqual(want!.top_logprobs?.map((top) => Object.keys(top)));
    got.top_logprobs?.forEach((top, i) => close(Object.values(top), Object.values(want!.top_logprobs![i])));
  });
});
