import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// Anthropic's Messages API, as the official @anthropic-ai/sdk client uses it, against `smmf serve`'s code in
// this process with the real test model.

let server: TestServer;
let client: Anthropic;
const MODEL = "stories260K";

beforeAll(async () => {
  server = await startTestServer({ sequences: 4 });
  client = new Anthropic({ baseURL: server.url, apiKey: "unused", maxRetries: 0, timeout: 30_000 });
});
afterAll(async () => {
  await server?.close();
});

// Greedy sampling, for answers that can be compared. (This SDK's types no longer list temperature, top_p and
// top_k, which newer Claude models refuse; the Messages API SMMF serves still takes them.)
const GREEDY = { temperature: 0 } as object;

const PROMPT: Anthropic.MessageParam[] = [{ role: "user", content: "Once upon a time" }];

function textOf(message: Anthropic.Message): string {
  return message.content.map((b) => (b.type === "text" ? b.text : "")).join("");
}

/** The error an SDK call fails with. */
async function failure(call: Promise<unknown>): Promise<InstanceType<typeof Anthropic.APIError>> {
  const err = await call.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(Anthropic.APIError);
  return err as InstanceType<typeof Anthropic.APIError>;
}

describe("POST /v1/messages (Anthropic's Messages API)", () => {
  it("messages.create answers a message: text content, stop_reason max_tokens at the limit, usage, the request's id", async () => {
    const { data: message, response } = await client.messages.create({ model: MODEL, max_tokens: 12, system: "You tell stories.", messages: PROMPT, ...GREEDY }).withResponse();
    expect(message).toMatchObject({ type: "message", role: "assistant", model: MODEL, stop_reason: "max_tokens", stop_sequence: null });
    expect(message.content[0].type).toBe("text");
    expect(textOf(message).length).toBeGreaterThan(0);
    expect(message.usage.output_tokens).toBe(12);
    expect(message.usage.input_tokens).toBeGreaterThan(0);
    // The message id is the request's id: the one to look it up by in the request log.
    expect(response.headers.get("x-request-id")).toBe(message.id);
    const logged = await expect.poll(async () => (await fetch(`${server.url}/api/v1/requests/${message.id}`)).status).toBe(200);
    void logged;
  });

  it("a system prompt and earlier turns (text blocks) reach the model: they count as input tokens", async () => {
    const short = await client.messages.create({ model: MODEL, max_tokens: 1, messages: PROMPT });
    const long = await client.messages.create({
      model: MODEL,
      max_tokens: 1,
      system: [{ type: "text", text: "You tell long stories about cats." }],
      messages: [
        { role: "user", content: [{ type: "text", text: "Once upon a time" }] },
        { role: "assistant", content: "there was a cat." },
        { role: "user", content: "And then?" },
      ],
    });
    expect(long.usage.input_tokens).toBeGreaterThan(short.usage.input_tokens + 10);
    // Anthropic's sampling fields are taken (top_k 1 is greedy: the same answer twice).
    const sampled = { model: MODEL, max_tokens: 8, messages: PROMPT, ...({ top_k: 1, top_p: 0.9, temperature: 0.7 } as object), metadata: { user_id: "u-1" } };
    expect(textOf(await client.messages.create(sampled))).toBe(textOf(await client.messages.create(sampled)));
  });

  it("messages.stream: the text is the deltas, the events come in Anthropic's order, and the answer equals the non-streamed one", async () => {
    const params = { model: MODEL, max_tokens: 24, messages: PROMPT, ...GREEDY };
    const whole = await client.messages.create(params);
    const stream = client.messages.stream(params);
    const types: string[] = [];
    let deltas = "";
    stream.on("streamEvent", (event) => types.push(event.type));
    stream.on("text", (text) => (deltas += text));
    const final = await stream.finalMessage();
    expect(deltas).toBe(textOf(final));
    expect(textOf(final)).toBe(textOf(whole));
    expect(final.stop_reason).toBe("max_tokens");
    expect(final.usage.output_tokens).toBe(whole.usage.output_tokens);
    expect(final.usage.input_tokens).toBe(whole.usage.input_tokens);
    expect(types[0]).toBe("message_start");
    expect(types[1]).toBe("content_block_start");
    expect(types.filter((t) => t === "content_block_delta").length).toBeGreaterThan(0);
    expect(types.slice(-3)).toEqual(["content_block_stop", "message_delta", "message_stop"]);
  });

  it("the raw stream: named events with their data, a ping after message_start, a content block, message_stop last", async () => {
    const res = await fetch(`${server.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" },
      body: JSON.stringify({ model: MODEL, max_tokens: 4, messages: PROMPT, stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = (await res.text()).split("\n\n").filter(Boolean).map((block) => {
      const [eventLine, dataLine] = block.split("\n");
      const data = JSON.parse(dataLine.replace(/^data: /, "")) as { type: string };
      expect(eventLine).toBe(`event: ${data.type}`);
      return data.type;
    });
    expect(events.slice(0, 3)).toEqual(["message_start", "ping", "content_block_start"]);
    expect(events.at(-1)).toBe("message_stop");
  });

  it("stops at a stop sequence: stop_reason stop_sequence names it, and the text ends before it (streamed too)", async () => {
    const params = { model: MODEL, max_tokens: 40, messages: PROMPT, ...GREEDY };
    const free = textOf(await client.messages.create(params));
    // A word from the middle of the free answer.
    const words = free.split(/\s+/).filter((w) => w.length >= 3);
    expect(words.length, free).toBeGreaterThan(3);
    const stop = words[2];
    const cut = free.slice(0, free.indexOf(stop));
    const stopped = await client.messages.create({ ...params, stop_sequences: ["zzzz-never", stop] });
    expect(stopped.stop_reason).toBe("stop_sequence");
    expect(stopped.stop_sequence).toBe(stop);
    expect(textOf(stopped)).toBe(cut);
    const streamed = await client.messages.stream({ ...params, stop_sequences: [stop] }).finalMessage();
    expect(streamed.stop_reason).toBe("stop_sequence");
    expect(streamed.stop_sequence).toBe(stop);
    expect(textOf(streamed)).toBe(cut);
  });

  it("tools: a forced tool call comes back as a tool_use block (stop_reason tool_use), and its tool_result continues the conversation", async () => {
    const tools: Anthropic.Tool[] = [
      {
        name: "get_weather",
        description: "Weather forecast.",
        input_schema: { type: "object", properties: { city: { type: "string", maxLength: 12 }, units: { type: "string", enum: ["celsius", "fahrenheit"] } }, required: ["city", "units"] },
      },
    ];
    const asked: Anthropic.MessageParam = { role: "user", content: "Weather in Paris?" };
    const call = await client.messages.create({ model: MODEL, max_tokens: 200, messages: [asked], tools, tool_choice: { type: "tool", name: "get_weather" }, ...GREEDY });
    expect(call.stop_reason).toBe("tool_use");
    const use = call.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use");
    expect(use, JSON.stringify(call.content)).toBeDefined();
    expect(use!.name).toBe("get_weather");
    expect(use!.input).toMatchObject({ city: expect.any(String), units: expect.stringMatching(/^(celsius|fahrenheit)$/) });
    // Streamed, the same call arrives as a tool_use block whose input is the input_json_delta pieces.
    const streamed = await client.messages.stream({ model: MODEL, max_tokens: 200, messages: [asked], tools, tool_choice: { type: "tool", name: "get_weather" }, ...GREEDY }).finalMessage();
    const streamedUse = streamed.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use");
    expect(streamedUse?.input).toEqual(use!.input);
    const next = await client.messages.create({
      model: MODEL,
      max_tokens: 8,
      tools,
      messages: [asked, { role: "assistant", content: call.content }, { role: "user", content: [{ type: "tool_result", tool_use_id: use!.id, content: "Sunny, 21 degrees." }] }],
    });
    expect(next.type).toBe("message");
    expect(next.usage.input_tokens).toBeGreaterThan(call.usage.input_tokens);
  });

  it("messages.countTokens counts the input as messages.create does", async () => {
    const params = { model: MODEL, system: "You tell stories.", messages: PROMPT };
    const counted = await client.messages.countTokens(params);
    const created = await client.messages.create({ ...params, max_tokens: 1 });
    expect(counted.input_tokens).toBe(created.usage.input_tokens);
  });

  it("bad input gets Anthropic's error shape and status: 400 invalid_request_error naming the field, 404 not_found_error for an unknown model", async () => {
    const cases: [string, Promise<unknown>, RegExp][] = [
      ["no max_tokens", client.messages.create({ model: MODEL, messages: PROMPT } as unknown as Anthropic.MessageCreateParamsNonStreaming), /max_tokens/],
      ["temperature over 1", client.messages.create({ model: MODEL, max_tokens: 4, messages: PROMPT, ...({ temperature: 1.5 } as object) }), /temperature/],
      ["no messages", client.messages.create({ model: MODEL, max_tokens: 4, messages: [] }), /messages/],
      ["a bad role", client.messages.create({ model: MODEL, max_tokens: 4, messages: [{ role: "system" as "user", content: "x" }] }), /role/],
      ["an image block", client.messages.create({ model: MODEL, max_tokens: 4, messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "AAAA" } }] }] }), /image/],
      ["an unknown field", client.messages.create({ model: MODEL, max_tokens: 4, messages: PROMPT, frobnicate: true } as unknown as Anthropic.MessageCreateParamsNonStreaming), /frobnicate/],
    ];
    for (const [what, call, message] of cases) {
      const err = await failure(call);
      expect(err.status, what).toBe(400);
      expect(err.error, what).toMatchObject({ type: "error", error: { type: "invalid_request_error", message: expect.stringMatching(message) } });
    }
    const unknown = await failure(client.messages.create({ model: "no-such-model", max_tokens: 4, messages: PROMPT }));
    expect(unknown.status).toBe(404);
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
    expect(unknown.error).toMatchObject({ type: "error", error: { type: "not_found_error", message: expect.stringContaining("no-such-model") } });
    const streamed = await failure(client.messages.stream({ model: "no-such-model", max_tokens: 4, messages: PROMPT }).finalMessage());
    expect(streamed.status).toBe(404);
    // Not JSON at all.
    const res = await fetch(`${server.url}/v1/messages`, { method: "POST", headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" }, body: "{not json" });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
  });
});
