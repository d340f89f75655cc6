import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ControllerService } from "../src/gen/smmf/v1/controller_pb.js";
import { FinishReason, GenerateRequestSchema, InferenceService, type GenerateRequest } from "../src/gen/smmf/v1/inference_pb.js";
import { InstanceState } from "../src/gen/smmf/v1/instance_pb.js";
import { startTestServer, type TestServer } from "./helpers/startTestServer.js";
import { testModelPath } from "./helpers/testModel.js";

// Two names for the same GGUF file with different settings, behind one gateway.
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({
    models: [
      { name: "stories260K", file: testModelPath(), sequences: 2 },
      { name: "stories-short", file: testModelPath(), contextSize: 256, sequences: 1, embeddings: false },
    ],
  });
});
afterAll(async () => {
  await server?.close();
});

async function* start(model: string, prompt: string, maxTokens: number): AsyncIterable<GenerateRequest> {
  yield create(GenerateRequestSchema, { kind: { case: "start", value: { model, input: { case: "prompt", value: prompt }, params: { maxTokens, temperature: 0 } } } });
}

describe("the gateway's gRPC services", () => {
  it("serves InferenceService.Generate over gRPC, routed to an instance of the model", async () => {
    const client = createClient(InferenceService, createGrpcTransport({ baseUrl: server.url }));
    let text = "";
    let tokens = 0;
    let done;
    for await (const res of client.generate(start("stories260K", "Once upon a time", 12))) {
      if (res.kind.case === "delta") {
        text += res.kind.value.pieces.join("");
        tokens += res.kind.value.pieces.length;
      } else if (res.kind.case === "done") done = res.kind.value;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(done!.usage!.completionTokens).toBe(12);
    expect(tokens).toBe(12);
    const ids = server.embedded.worker.worker.list().filter((i) => i.model === "stories260K").map((i) => i.instanceId);
    expect(ids).toContain(done!.instanceId);
    // The same text as the REST API gives for the same request.
    const rest = await server.openai.completions.create({ model: "stories260K", prompt: "Once upon a time", max_tokens: 12, temperature: 0 });
    expect(rest.choices[0].text).toBe(text);
  });

  it("gives gRPC clients tool calls, n answers and logprobs, as REST clients get them", async () => {
    const client = createClient(InferenceService, createGrpcTransport({ baseUrl: server.url }));
    const schema = { type: "object", properties: { city: { type: "string", maxLength: 12 }, days: { type: "integer", minimum: 1, maximum: 5 } }, required: ["city", "days"], additionalProperties: false };
    async function* toolCall(): AsyncIterable<GenerateRequest> {
      yield create(GenerateRequestSchema, {
        kind: {
          case: "start",
          value: {
            model: "stories260K",
            input: { case: "chat", value: { messages: [{ role: "user", content: "Weather?" }] } },
            params: { maxTokens: 200, temperature: 1, seed: 7 },
            tools: [{ name: "get_weather", parametersJson: JSON.stringify(schema) }],
            toolChoice: { choice: { case: "functionName", value: "get_weather" } },
          },
        },
      });
    }
    const call = { id: "", name: "", arguments: "" };
    let otherTokens = 0;
    let finish;
    let usage;
    for await (const res of client.generate(toolCall())) {
      if (res.kind.case === "delta") {
        expect(res.kind.value.pieces).toEqual([]);
        otherTokens += res.kind.value.otherTokens;
        for (const piece of res.kind.value.toolCalls) {
          expect(piece.index).toBe(0);
          call.id += piece.id;
          call.name += piece.name;
          call.arguments += piece.arguments;
        }
      } else if (res.kind.case === "done") {
        finish = res.kind.value.finishReason;
        usage = res.kind.value.usage;
      }
    }
    expect(call.id).toMatch(/^call_[A-Za-z0-9]{24}$/);
    expect(call.name).toBe("get_weather");
    const args = JSON.parse(call.arguments) as { city: string; days: number };
    expect(typeof args.city).toBe("string");
    expect(args.city.length).toBeLessThanOrEqual(12);
    expect([1, 2, 3, 4, 5]).toContain(args.days);
    expect(finish).toBe(FinishReason.STOP);
    expect(otherTokens).toBeGreaterThan(0);
    expect(usage!.completionTokens).toBeGreaterThanOrEqual(otherTokens);

    async function* twoAnswers(): AsyncIterable<GenerateRequest> {
      yield create(GenerateRequestSchema, {
        kind: { case: "start", value: { model: "stories260K", input: { case: "prompt", value: "Once upon a time" }, params: { maxTokens: 5, temperature: 1, seed: 3 }, n: 2, logprobs: true, topLogprobs: 2 } },
      });
    }
    const tokens = [0, 0];
    let done;
    for await (const res of client.generate(twoAnswers())) {
      if (res.kind.case === "delta") {
        const d = res.kind.value;
        tokens[d.index] += d.pieces.length;
        expect(d.logprobs).toHaveLength(d.pieces.length);
        for (const lp of d.logprobs) {
          expect(lp.logprob).toBeLessThanOrEqual(0);
          expect(lp.bytes.length).toBeGreaterThan(0);
          expect(lp.top).toHaveLength(2);
        }
      } else if (res.kind.case === "done") done = res.kind.value;
    }
    expect(tokens).toEqual([5, 5]);
    expect(done!.usage!.completionTokens).toBe(10);
    expect(done!.choiceFinishReasons).toEqual([FinishReason.LENGTH, FinishReason.LENGTH]);
  });

  it("streams Generate over the Connect protocol on HTTP/2 while the client's request stream is still open", async () => {
    const client = createClient(InferenceService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    // The request stream stays open until the first tokens have come: an answer held until the request ends would never come.
    async function* open(): AsyncIterable<GenerateRequest> {
      yield* start("stories260K", "Once upon a time", 6);
      await held;
    }
    let tokens = 0;
    for await (const res of client.generate(open())) {
      if (res.kind.case === "delta") {
        tokens += res.kind.value.pieces.length;
        release();
      }
    }
    expect(tokens).toBe(6);
  });

  it("maps errors to gRPC codes: unknown model → NOT_FOUND, bad field → INVALID_ARGUMENT", async () => {
    const client = createClient(InferenceService, createGrpcTransport({ baseUrl: server.url }));
    const codeOf = async (iterable: AsyncIterable<unknown>) => {
      try {
        for await (const r of iterable) void r;
      } catch (err) {
        return ConnectError.from(err).code;
      }
      return undefined;
    };
    expect(await codeOf(client.generate(start("nope", "x", 3)))).toBe(Code.NotFound);
    expect(await codeOf(client.generate(start("stories260K", "x", 0)))).toBe(Code.InvalidArgument);
    await expect(client.embed({ model: "stories260K", inputs: [] })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("serves Embed and CountTokens", async () => {
    const client = createClient(InferenceService, createGrpcTransport({ baseUrl: server.url }));
    const res = await client.embed({ model: "stories260K", inputs: ["a cat"] });
    expect(res.embeddings[0].values).toHaveLength(64);
    const count = await client.countTokens({ model: "stories-short", input: { case: "prompt", value: "Once upon a time" } });
    expect(count.tokenCount).toBeGreaterThan(1);
    expect(count.contextSize).toBe(256);
  });

  it("serves ControllerService over the Connect protocol on HTTP/1.1, on the same port", async () => {
    const client = createClient(ControllerService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const models = await client.listModels({});
    expect(models.models.map((m) => m.name)).toEqual(["stories-short", "stories260K"]);
    expect(models.models.every((m) => m.readyReplicas === 1 && m.engines[0] === "llama.cpp")).toBe(true);
    const instances = await client.listModelInstances({ model: "stories-short" });
    expect(instances.instances).toHaveLength(1);
    expect(instances.instances[0]).toMatchObject({ model: "stories-short", state: InstanceState.ONLINE, contextSize: 256, embeddingSize: 0, maxConcurrency: 1 });
    const all = await client.listModelInstances({});
    expect(all.instances).toHaveLength(2);
  });

  it("answers Connect JSON from plain fetch", async () => {
    const res = await fetch(`${server.url}/smmf.v1.ControllerService/ListModels`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { models: { name: string }[] };
    expect(body.models.map((m) => m.name)).toContain("stories260K");
  });
});

describe("one GGUF served under two names with different settings", () => {
  it("lists both models and each answers with its own settings", async () => {
    const list = await server.openai.models.list();
    expect(list.data.map((m) => m.id).sort()).toEqual(["stories-short", "stories260K"]);
    const short = await server.openai.completions.create({ model: "stories-short", prompt: "Once upon a time", max_tokens: 8 });
    expect(short.choices[0].text.length).toBeGreaterThan(0);
    // stories-short has a 256-token context: what fits in stories260K's does not fit in it.
    const prompt = "the cat sat on the mat ".repeat(60);
    const long = await server.openai.completions.create({ model: "stories260K", prompt, max_tokens: 4 });
    expect(long.usage!.prompt_tokens).toBeGreaterThan(256);
    await expect(server.openai.completions.create({ model: "stories-short", prompt, max_tokens: 4 })).rejects.toMatchObject({ status: 400, code: "context_length_exceeded" });
    // stories-short serves no embeddings.
    await expect(server.openai.embeddings.create({ model: "stories-short", input: "x" })).rejects.toMatchObject({ status: 400, param: "model" });
  });
});
