import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// OpenAI's Responses API, as the official `openai` client uses it (responses.create, responses.stream,
// previous_response_id, retrieve, delete), against `smmf serve`'s code in this process with the real test model.

let server: TestServer;
let openai: OpenAI;
const MODEL = "stories260K";

beforeAll(async () => {
  server = await startTestServer({ sequences: 4 });
  openai = server.openai;
});
afterAll(async () => {
  await server?.close();
});

async function failure(call: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  const err = await call.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(OpenAI.APIError);
  return err as InstanceType<typeof OpenAI.APIError>;
}

describe("POST /v1/responses (OpenAI's Responses API)", () => {
  it("responses.create with a string input: a completed response with its output text, usage, and the request's id", async () => {
    const { data: response, response: http } = await openai.responses.create({ model: MODEL, input: "Once upon a time", max_output_tokens: 12, temperature: 0 }).withResponse();
    expect(response).toMatchObject({ object: "response", model: MODEL, status: "incomplete", incomplete_details: { reason: "max_output_tokens" }, store: true });
    expect(response.output[0]).toMatchObject({ type: "message", role: "assistant", status: "completed" });
    expect(response.output_text.length).toBeGreaterThan(0);
    expect(response.usage).toMatchObject({ output_tokens: 12, input_tokens: expect.any(Number) });
    expect(response.usage!.total_tokens).toBe(response.usage!.input_tokens + 12);
    expect(http.headers.get("x-request-id")).toBe(response.id);
    // It went through the request log like a chat completion.
    await expect.poll(async () => (await fetch(`${server.url}/api/v1/requests/${response.id}`)).status).toBe(200);
    const logged = (await (await fetch(`${server.url}/api/v1/requests/${response.id}`)).json()) as Record<string, unknown>;
    expect(logged).toMatchObject({ endpoint: "responses", model: MODEL, status: 200, completionTokens: 12 });
  });

  it("item input with instructions: each reaches the model (input tokens grow), and developer messages count as instructions", async () => {
    const short = await openai.responses.create({ model: MODEL, input: "Hi", max_output_tokens: 1 });
    const long = await openai.responses.create({
      model: MODEL,
      instructions: "You tell long stories about cats and dogs.",
      input: [
        { role: "developer", content: "Be brief." },
        { role: "user", content: [{ type: "input_text", text: "Hi" }] },
        { role: "assistant", content: "Hello! What story?" },
        { role: "user", content: "A cat story." },
      ],
      max_output_tokens: 1,
    });
    expect(long.usage!.input_tokens).toBeGreaterThan(short.usage!.input_tokens + 15);
    expect(long.instructions).toBe("You tell long stories about cats and dogs.");
  });

  it("responses.stream: the deltas make the text, one delta per token (usage in response.completed equals them), events in the documented order", async () => {
    const params = { model: MODEL, input: "Once upon a time", max_output_tokens: 20, temperature: 0 };
    const whole = await openai.responses.create(params);
    const stream = openai.responses.stream(params);
    const types: string[] = [];
    const sequence: number[] = [];
    let deltas = "";
    let deltaEvents = 0;
    stream.on("event", (e) => {
      types.push(e.type);
      sequence.push(e.sequence_number);
    });
    stream.on("response.output_text.delta", (e) => {
      deltas += e.delta;
      deltaEvents++;
    });
    const final = await stream.finalResponse();
    expect(deltas).toBe(final.output_text);
    expect(final.output_text).toBe(whole.output_text);
    expect(final.usage!.output_tokens).toBe(deltaEvents);
    expect(final.usage).toEqual(whole.usage);
    expect(types.slice(0, 4)).toEqual(["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]);
    expect(types.slice(-4)).toEqual(["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"]);
    expect(sequence).toEqual(sequence.map((_, i) => i));
    // An answer that ends within the limit (a JSON object ends when it closes): the stream ends with response.completed.
    const endTypes: string[] = [];
    const json = openai.responses.stream({ model: MODEL, input: "A cat.", max_output_tokens: 200, text: { format: { type: "json_schema", name: "cat", strict: true, schema: { type: "object", properties: { name: { type: "string", maxLength: 8 } }, required: ["name"], additionalProperties: false } } } });
    json.on("event", (e) => endTypes.push(e.type));
    const done = await json.finalResponse();
    expect(done.status).toBe("completed");
    expect(endTypes.at(-1)).toBe("response.completed");
    expect(JSON.parse(done.output_text)).toEqual({ name: expect.any(String) });
  });

  it("previous_response_id continues a stored conversation; retrieve and delete find it, and a deleted one cannot be continued", async () => {
    const first = await openai.responses.create({ model: MODEL, input: "Once upon a time there was a cat.", max_output_tokens: 8, temperature: 0 });
    const alone = await openai.responses.create({ model: MODEL, input: "And then?", max_output_tokens: 1 });
    const next = await openai.responses.create({ model: MODEL, input: "And then?", previous_response_id: first.id, max_output_tokens: 1 });
    expect(next.previous_response_id).toBe(first.id);
    // The earlier turn and its answer are part of the prompt.
    expect(next.usage!.input_tokens).toBeGreaterThan(alone.usage!.input_tokens + first.usage!.output_tokens);
    const retrieved = await openai.responses.retrieve(first.id);
    expect(retrieved.output_text).toBe(first.output_text);
    expect(retrieved.usage).toEqual(first.usage);
    await openai.responses.delete(first.id);
    expect((await failure(openai.responses.retrieve(first.id))).status).toBe(404);
    const gone = await failure(openai.responses.create({ model: MODEL, input: "More", previous_response_id: first.id, max_output_tokens: 1 }));
    expect(gone.status).toBe(404);
    expect(gone.message).toMatch(/previous response/i);
    // store: false keeps nothing.
    const unstored = await openai.responses.create({ model: MODEL, input: "Hi", store: false, max_output_tokens: 1 });
    expect((await failure(openai.responses.retrieve(unstored.id))).status).toBe(404);
  });

  it("function tools: a forced call is a function_call item; its function_call_output continues the conversation", async () => {
    const tools: OpenAI.Responses.FunctionTool[] = [
      { type: "function", name: "get_weather", description: "Weather forecast.", strict: true, parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 } }, required: ["city"], additionalProperties: false } },
    ];
    const call = await openai.responses.create({ model: MODEL, input: "Weather in Paris?", tools, tool_choice: "required", parallel_tool_calls: false, max_output_tokens: 200, temperature: 0 });
    const item = call.output.find((o): o is OpenAI.Responses.ResponseFunctionToolCall => o.type === "function_call");
    expect(item, JSON.stringify(call.output)).toBeDefined();
    expect(item!.name).toBe("get_weather");
    expect(JSON.parse(item!.arguments)).toEqual({ city: expect.any(String) });
    const streamed = await openai.responses.stream({ model: MODEL, input: "Weather in Paris?", tools, tool_choice: "required", parallel_tool_calls: false, max_output_tokens: 200, temperature: 0 }).finalResponse();
    const streamedItem = streamed.output.find((o) => o.type === "function_call") as OpenAI.Responses.ResponseFunctionToolCall | undefined;
    expect(streamedItem?.arguments).toBe(item!.arguments);
    const next = await openai.responses.create({ model: MODEL, tools, previous_response_id: call.id, input: [{ type: "function_call_output", call_id: item!.call_id, output: "Sunny, 21 degrees." }], max_output_tokens: 4 });
    expect(next.status).toMatch(/completed|incomplete/);
    expect(next.usage!.input_tokens).toBeGreaterThan(call.usage!.input_tokens);
  });

  it("text.format json_schema: the output text is JSON that matches the schema", async () => {
    const response = await openai.responses.create({
      model: MODEL,
      input: "A cat.",
      max_output_tokens: 200,
      text: { format: { type: "json_schema", name: "cat", strict: true, schema: { type: "object", properties: { name: { type: "string", maxLength: 10 }, age: { type: "integer" } }, required: ["name", "age"], additionalProperties: false } } },
    });
    expect(JSON.parse(response.output_text)).toEqual({ name: expect.any(String), age: expect.any(Number) });
  });

  it("bad input gets OpenAI's error shape: an unknown parameter, an unsupported item, a missing input, an unknown model", async () => {
    const unknown = await failure(openai.responses.create({ model: MODEL, input: "x", frobnicate: 1 } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming));
    expect(unknown.status).toBe(400);
    expect(unknown.error).toMatchObject({ type: "invalid_request_error", param: "frobnicate" });
    const image = await failure(openai.responses.create({ model: MODEL, input: [{ role: "user", content: [{ type: "input_image", image_url: "https://example.com/x.png", detail: "auto" }] }] }));
    expect(image.status).toBe(400);
    expect(image.message).toMatch(/input_image/);
    const none = await failure(openai.responses.create({ model: MODEL } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming));
    expect(none.status).toBe(400);
    expect(none.message).toMatch(/input/);
    const tooMany = await failure(openai.responses.create({ model: MODEL, input: "x", max_output_tokens: 0 }));
    expect(tooMany.error).toMatchObject({ param: "max_output_tokens" });
    const model = await failure(openai.responses.create({ model: "no-such-model", input: "x" }));
    expect(model.status).toBe(404);
    expect(model.error).toMatchObject({ code: "model_not_found" });
    const streamed = await failure(openai.responses.stream({ model: "no-such-model", input: "x" }).finalResponse());
    expect(streamed.status).toBe(404);
  });
});
