import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import http2 from "node:http2";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatMessageSchema, GenerateRequestSchema, GenerateStartSchema, InferenceService, type GenerateRequest } from "../../src/gen/smmf/v1/inference_pb.js";
import { DEFAULT_REQUEST_CAPS } from "../../src/gateway/requestCaps.js";
import { DEFAULTS } from "../../src/config/loadConfig.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// The gateway's caps on one inference request, small here so that they are cheap to reach: 8 messages, 300
// prompt characters, stop strings of 16 characters. The body limit (1 MiB) stays far above them.
let server: TestServer;
let grpc: Client<typeof InferenceService>;
let connect: Client<typeof InferenceService>;
/** Connect's bidirectional streams need HTTP/2 (HTTP/1.1 answers 505). */
let connectH2: Client<typeof InferenceService>;
const CAPS = { maxMessages: 8, maxPromptChars: 300, maxStopChars: 16 };

beforeAll(async () => {
  server = await startTestServer(CAPS);
  grpc = createClient(InferenceService, createGrpcTransport({ baseUrl: server.url }));
  connect = createClient(InferenceService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
  connectH2 = createClient(InferenceService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
}, 60_000);
afterAll(() => server?.close());

/** The OpenAI SDK's error for `call`, which must be a 400 invalid_request_error naming `param`. */
async function badRequest(call: Promise<unknown>, param: string): Promise<InstanceType<typeof OpenAI.APIError>> {
  const err = await call.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  const apiError = err as InstanceType<typeof OpenAI.APIError>;
  expect(apiError.status).toBe(400);
  expect(apiError.type).toBe("invalid_request_error");
  expect(apiError.code).toBe("invalid_argument");
  expect(apiError.param).toBe(param);
  return apiError;
}

async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

async function generateError(client: Client<typeof InferenceService>, start: MessageInitShape<typeof GenerateStartSchema>): Promise<ConnectError> {
  async function* requests(): AsyncIterable<GenerateRequest> {
    yield create(GenerateRequestSchema, { kind: { case: "start", value: create(GenerateStartSchema, start) } });
  }
  return rpcError(
    (async () => {
      for await (const r of client.generate(requests())) void r;
    })(),
  );
}

const user = (content: string) => ({ role: "user" as const, content });
const rpcUser = (content: string) => create(ChatMessageSchema, { role: "user", content });

describe("request caps: defaults", () => {
  it("are the documented ones, in the config defaults and the gateway's", () => {
    expect(DEFAULT_REQUEST_CAPS).toEqual({ maxMessages: 2048, maxPromptChars: 1_048_576, maxStopChars: 512 });
    expect({ maxMessages: DEFAULTS.maxMessages, maxPromptChars: DEFAULTS.maxPromptChars, maxStopChars: DEFAULTS.maxStopChars }).toEqual(DEFAULT_REQUEST_CAPS);
  });
});

describe("request caps through the OpenAI SDK", () => {
  it("a chat request at the caps is served", async () => {
    const res = await server.openai.chat.completions.create({
      model: "stories260K",
      messages: Array.from({ length: 8 }, (_, i) => user(i === 0 ? "x".repeat(286) : "Hi")),
      stop: ["0123456789abcdef", "###"],
      max_tokens: 2,
    });
    expect(res.choices[0].finish_reason).toBeDefined();
  });

  it("too many messages: 400 naming messages", async () => {
    const err = await badRequest(server.openai.chat.completions.create({ model: "stories260K", messages: Array.from({ length: 9 }, () => user("Hi")), max_tokens: 1 }), "messages");
    expect(err.message).toMatch(/at most 8/);
  });

  it("too many prompt characters, summed over the messages (text parts too), and in a completion's prompt", async () => {
    await badRequest(server.openai.chat.completions.create({ model: "stories260K", messages: [user("x".repeat(200)), user("y".repeat(101))], max_tokens: 1 }), "messages");
    await badRequest(
      server.openai.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: [{ type: "text", text: "x".repeat(250) }, { type: "text", text: "y".repeat(51) }] }], max_tokens: 1 }),
      "messages",
    );
    await badRequest(server.openai.completions.create({ model: "stories260K", prompt: "z".repeat(301), max_tokens: 1 }), "prompt");
    const ok = await server.openai.completions.create({ model: "stories260K", prompt: "z".repeat(300), max_tokens: 1 });
    expect(ok.usage?.completion_tokens).toBe(1);
  });

  it("embedding inputs share the prompt-character cap", async () => {
    await badRequest(server.openai.embeddings.create({ model: "stories260K", input: ["a".repeat(150), "b".repeat(151)] }), "input");
    const ok = await server.openai.embeddings.create({ model: "stories260K", input: ["a".repeat(150), "b".repeat(150)] });
    expect(ok.data).toHaveLength(2);
  });

  it("stop strings: a long one, too many, or one that is not a string is a 400, never a 500", async () => {
    await badRequest(server.openai.completions.create({ model: "stories260K", prompt: "Once", stop: "s".repeat(17), max_tokens: 1 }), "stop");
    await badRequest(server.openai.chat.completions.create({ model: "stories260K", messages: [user("Hi")], stop: ["a", "b", "c", "d", "e"], max_tokens: 1 }), "stop");
    for (const stop of [[["nested"]], [1], { a: "b" }, 3, [null], true]) {
      await badRequest(server.openai.completions.create({ model: "stories260K", prompt: "Once", stop: stop as unknown as string, max_tokens: 1 }), "stop");
    }
  });
});

describe("request caps over gRPC and Connect", () => {
  for (const [name, client, streaming] of [["gRPC", () => grpc, () => grpc], ["Connect", () => connect, () => connectH2]] as const) {
    it(`${name}: Generate refuses too many messages, too long a prompt, a long stop string (INVALID_ARGUMENT)`, async () => {
      const tooMany = await generateError(streaming(), { model: "stories260K", input: { case: "chat", value: { messages: Array.from({ length: 9 }, () => rpcUser("Hi")) } } });
      expect(tooMany.code).toBe(Code.InvalidArgument);
      expect(tooMany.metadata.get("smmf-error-code")).toBe("invalid_argument");
      expect(tooMany.metadata.get("smmf-error-param")).toBe("messages");
      const tooLong = await generateError(streaming(), { model: "stories260K", input: { case: "chat", value: { messages: [rpcUser("x".repeat(250)), rpcUser("y".repeat(51))] } } });
      expect(tooLong.code).toBe(Code.InvalidArgument);
      expect(tooLong.metadata.get("smmf-error-param")).toBe("messages");
      const prompt = await generateError(streaming(), { model: "stories260K", input: { case: "prompt", value: "p".repeat(301) } });
      expect(prompt.metadata.get("smmf-error-param")).toBe("prompt");
      const stop = await generateError(streaming(), { model: "stories260K", input: { case: "prompt", value: "Once" }, params: { stop: ["s".repeat(17)] } });
      expect(stop.code).toBe(Code.InvalidArgument);
      expect(stop.metadata.get("smmf-error-param")).toBe("stop");
    });

    it(`${name}: CountTokens and Embed check the prompt characters before a worker tokenizes`, async () => {
      const count = await rpcError(client().countTokens({ model: "stories260K", input: { case: "prompt", value: "c".repeat(301) } }));
      expect(count.code).toBe(Code.InvalidArgument);
      const chat = await rpcError(client().countTokens({ model: "stories260K", input: { case: "chat", value: { messages: Array.from({ length: 9 }, () => rpcUser("Hi")) } } }));
      expect(chat.code).toBe(Code.InvalidArgument);
      const embed = await rpcError(client().embed({ model: "stories260K", inputs: ["e".repeat(301)] }));
      expect(embed.code).toBe(Code.InvalidArgument);
      expect((await client().countTokens({ model: "stories260K", input: { case: "prompt", value: "Once upon a time" } })).tokenCount).toBeGreaterThan(1);
    });
  }
});

/** A gRPC call with a hand-made body; resolves with its grpc-status and grpc-message. */
function rawGrpc(path: string, body: Buffer): Promise<{ status: string | undefined; message: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(server.url);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.resume();
    stream.on("close", () => {
      session.close();
      const status = trailers["grpc-status"] ?? headers["grpc-status"];
      resolve({ status: status === undefined ? undefined : String(status), message: decodeURIComponent(String(trailers["grpc-message"] ?? headers["grpc-message"] ?? "")) });
    });
    stream.end(body);
  });
}

function envelope(payload: Buffer, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

describe("a malformed Generate stream (found by the fuzzer)", () => {
  it("a first message that does not parse, or one with the compressed flag and no encoding, is INVALID_ARGUMENT, not INTERNAL", async () => {
    // Field 1 (start) claims 5 bytes and holds 1: "premature EOF".
    const truncated = await rawGrpc("/smmf.v1.InferenceService/Generate", envelope(Buffer.from([0x0a, 0x05, 0x61])));
    expect(truncated.status).toBe(String(Code.InvalidArgument));
    expect(truncated.message).toMatch(/malformed/);
    const compressed = await rawGrpc("/smmf.v1.InferenceService/Generate", envelope(Buffer.from([0x0a, 0x00]), 1));
    expect(compressed.status).toBe(String(Code.InvalidArgument));
    // The server still serves a well-formed call.
    const ok = await server.openai.completions.create({ model: "stories260K", prompt: "Once", max_tokens: 1 });
    expect(ok.usage?.completion_tokens).toBe(1);
  });
});
