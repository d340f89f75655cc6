import { GeneralChatWrapper, LlamaText, type ChatModelFunctions, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testModelPath } from "../../test/helpers/testModel.js";
import type { ChatTurn } from "./Engine.js";
import { renderChatPrompt, toChatHistory } from "./chatPrompt.js";
import { getSharedLlama } from "./getSharedLlama.js";

const call = (name: string, params: unknown, result: unknown) => ({ type: "functionCall", name, params, result });

/** A weather exchange: the model calls get_weather (after saying "checking"), the tool answers. */
const weather: ChatTurn[] = [
  { role: "system", content: "sys" },
  { role: "user", content: "weather in Paris?" },
  { role: "assistant", content: "checking", toolCalls: [{ id: "c1", name: "get_weather", arguments: '{"city":"Paris"}' }] },
  { role: "tool", content: '{"temp":21}', toolCallId: "c1" },
];

describe("toChatHistory", () => {
  it("maps plain turns and opens an empty model response for the answer", () => {
    const history = toChatHistory([
      { role: "system", content: "be nice" },
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello" },
      { role: "user", content: "again" },
    ]);
    expect(history).toEqual([
      { type: "system", text: "be nice" },
      { type: "user", text: "hi" },
      { type: "model", response: ["hello"] },
      { type: "user", text: "again" },
      { type: "model", response: [] },
    ]);
  });

  it("a continuation starts the answer's response", () => {
    expect(toChatHistory([{ role: "user", content: "hi" }], "Hel").at(-1)).toEqual({ type: "model", response: ["Hel"] });
  });

  it("keeps tool calls inside the model response with the results of the tool messages that answer them, by id", () => {
    const history = toChatHistory([
      { role: "user", content: "two cities" },
      {
        role: "assistant",
        content: "",
        toolCalls: [
          { id: "a", name: "get_weather", arguments: '{"city":"Paris"}' },
          { id: "b", name: "get_weather", arguments: '{"city":"Oslo"}' },
        ],
      },
      // Answered in the other order.
      { role: "tool", content: '{"temp":3}', toolCallId: "b" },
      { role: "tool", content: "21 degrees", toolCallId: "a" },
      { role: "user", content: "thanks" },
    ]);
    expect(history).toEqual([
      { type: "user", text: "two cities" },
      { type: "model", response: [call("get_weather", { city: "Paris" }, "21 degrees"), call("get_weather", { city: "Oslo" }, { temp: 3 })] },
      { type: "user", text: "thanks" },
      { type: "model", response: [] },
    ]);
  });

  it("assistant text after tool results continues the same response", () => {
    const history = toChatHistory([...weather, { role: "assistant", content: "It is 21 degrees." }, { role: "user", content: "thanks" }]);
    expect(history).toEqual([
      { type: "system", text: "sys" },
      { type: "user", text: "weather in Paris?" },
      { type: "model", response: ["checking", call("get_weather", { city: "Paris" }, { temp: 21 }), "It is 21 degrees."] },
      { type: "user", text: "thanks" },
      { type: "model", response: [] },
    ]);
  });

  it("a second round of calls after the results stays in the same response, each result on its own call", () => {
    const history = toChatHistory([
      ...weather,
      { role: "assistant", content: "", toolCalls: [{ id: "c2", name: "get_time", arguments: "{}" }] },
      { role: "tool", content: "noon", toolCallId: "c2" },
    ]);
    expect(history.at(-1)).toEqual({
      type: "model",
      response: ["checking", call("get_weather", { city: "Paris" }, { temp: 21 }), call("get_time", {}, "noon")],
    });
    expect(history).toHaveLength(3);
  });

  it("when the last messages are tool results, the answer continues that response (with the continuation)", () => {
    const open = toChatHistory(weather);
    expect(open).toHaveLength(3);
    expect(open.at(-1)).toEqual({ type: "model", response: ["checking", call("get_weather", { city: "Paris" }, { temp: 21 })] });
    const continued = toChatHistory(weather, "It is");
    expect(continued).toHaveLength(3);
    expect(continued.at(-1)).toEqual({ type: "model", response: ["checking", call("get_weather", { city: "Paris" }, { temp: 21 }), "It is"] });
  });

  it("a user turn after a tool exchange closes it: the next assistant message opens a new response", () => {
    const history = toChatHistory([...weather, { role: "user", content: "and Oslo?" }, { role: "assistant", content: "cold" }]);
    expect(history.slice(-3)).toEqual([{ type: "user", text: "and Oslo?" }, { type: "model", response: ["cold"] }, { type: "model", response: [] }]);
  });

  it("arguments that are not JSON stay text; empty arguments are no params", () => {
    const history = toChatHistory([
      { role: "user", content: "x" },
      {
        role: "assistant",
        content: "",
        toolCalls: [
          { id: "1", name: "f", arguments: "not json" },
          { id: "2", name: "g", arguments: "" },
        ],
      },
      { role: "tool", content: "ok", toolCallId: "1" },
      { role: "tool", content: "[1,2]", toolCallId: "2" },
    ]);
    expect(history.at(-1)).toEqual({ type: "model", response: [call("f", "not json", "ok"), call("g", undefined, [1, 2])] });
  });
});

describe("renderChatPrompt (GeneralChatWrapper, the test model)", () => {
  let model: LlamaModel;
  const wrapper = new GeneralChatWrapper();
  const functions: ChatModelFunctions = {
    get_weather: { description: "Weather of a city", params: { type: "object", properties: { city: { type: "string" } } } },
  };

  beforeAll(async () => {
    const llama = await getSharedLlama(1, false);
    model = await llama.loadModel({ modelPath: testModelPath() });
  });

  afterAll(async () => {
    await model?.dispose();
  });

  it("documents the functions with the wrapper's call syntax, and renders the call with its result inside the answer", () => {
    const prompt = renderChatPrompt(model, wrapper, weather, "It is", functions);
    const text = prompt.contextText.toString();
    expect(text).toContain("get_weather");
    expect(text).toContain("Weather of a city");
    expect(text).toContain("||call:");
    // The history's call and result, then the continuation, end the prompt: the answer goes on from there.
    const at = text.lastIndexOf("checking||call: get_weather(");
    expect(at).toBeGreaterThan(0);
    expect(text.slice(at)).toMatch(/^checking\|\|call: get_weather\(\{"city": ?"Paris"\}\)\n\|\|result: \{"temp": ?21\}\n?It is$/);
  });

  it("without functions there is no function documentation", () => {
    const text = renderChatPrompt(model, wrapper, [{ role: "user", content: "hi" }]).contextText.toString();
    expect(text).not.toContain("||call:");
    expect(text).toContain("hi");
  });

  it("gives the prompt's tokens without BOS, and the wrapper's stop triggers", () => {
    const prompt = renderChatPrompt(model, wrapper, [{ role: "user", content: "hi" }], "Hel");
    expect(prompt.tokens.length).toBeGreaterThan(0);
    expect(prompt.tokens[0]).not.toBe(model.tokens.bos);
    const withBos = prompt.contextText.tokenize(model.tokenizer);
    expect(withBos[0]).toBe(model.tokens.bos);
    expect(prompt.tokens).toEqual(withBos.slice(1));
    expect(model.detokenize(prompt.tokens)).toMatch(/hi[\s\S]*Hel$/);
    expect(prompt.stopTriggers.map((t) => LlamaText(t).toString())).toContain("### Human");
  });
});
