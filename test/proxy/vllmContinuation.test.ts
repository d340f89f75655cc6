import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

type Json = Record<string, unknown>;
type ChatMessage = OpenAI.Chat.Completions.ChatCompletionMessageParam;

// Mid-stream failover on the vllm preset (README, "Upstream engines": "mid-stream failover continues the
// partial answer (`continue_final_message`)"). One gateway (SMMF, embedded in this process) serves the model
// "vm" from two vllm instances, each in front of its own loopback server playing vLLM. A fresh request is
// answered with the start of an answer; once the client has read it, the server that took it dies (the
// connection is destroyed, as when vLLM crashes). The gateway then sends the request to the other instance,
// whose server must be asked to continue the partial answer: it answers only the rest.

const MODEL = "vm";
const MESSAGES: ChatMessage[] = [
  { role: "system", content: "You tell short stories." },
  { role: "user", content: "Tell me a story about a dog." },
];
const MAX_TOKENS = 50;
/** The start of the answer, one upstream chunk each (the first server sends these, then dies). */
const PARTIAL = ["Once", " upon", " a"];
/** The rest of the answer (sent by the server asked to continue). */
const REST = [" time", " there", " was", " a", " dog", "."];
/** What the upstream reports as the prompt's tokens: the prompt alone, and the prompt with the partial answer in it. */
const PROMPT_TOKENS = 21;
const CONTINUED_PROMPT_TOKENS = PROMPT_TOKENS + PARTIAL.length;

interface Received {
  server: string;
  body: Json;
}

interface FakeVllm {
  name: string;
  server: Server;
  url: string;
  sockets: Set<Socket>;
}

let servers: FakeVllm[] = [];
/** Every request the two servers received, in order of arrival. */
const received: Received[] = [];
/** Fresh requests (no continuation) are answered with PARTIAL, then the connection waits for this to be settled (true: die). */
let fate: Promise<boolean> = Promise.resolve(false);
let gateway: TestServer;
let openai: OpenAI;

const chunk = (delta: Json, finish: string | null = null) => ({ id: "chatcmpl-vllm", object: "chat.completion.chunk", created: 1_700_000_000, model: "vllm-model", choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
const usageChunk = (prompt: number, completion: number) => ({ id: "chatcmpl-vllm", object: "chat.completion.chunk", created: 1_700_000_000, model: "vllm-model", choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } });
const sse = (res: ServerResponse, data: object | string) => res.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);

function handle(name: string, req: IncomingMessage, res: ServerResponse, text: string): void {
  const body = JSON.parse(text) as Json;
  received.push({ server: name, body });
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  if (body.continue_final_message === true) {
    // vLLM continuing the final assistant message: the rest of the answer only.
    for (const piece of REST) sse(res, chunk({ content: piece }));
    sse(res, chunk({}, "stop"));
    sse(res, usageChunk(CONTINUED_PROMPT_TOKENS, REST.length));
    res.end("data: [DONE]\n\n");
    return;
  }
  sse(res, chunk({ role: "assistant", content: "" }));
  for (const piece of PARTIAL) sse(res, chunk({ content: piece }));
  void fate.then((die) => {
    if (die) return void req.socket.destroy();
    for (const piece of REST) sse(res, chunk({ content: piece }));
    sse(res, chunk({}, "stop"));
    sse(res, usageChunk(PROMPT_TOKENS, PARTIAL.length + REST.length));
    res.end("data: [DONE]\n\n");
  });
}

async function startFakeVllm(name: string): Promise<FakeVllm> {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (text += d));
    req.on("end", () => handle(name, req, res, text));
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { name, server, sockets, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1` };
}

beforeAll(async () => {
  servers = [await startFakeVllm("vllm-a"), await startFakeVllm("vllm-b")];
  gateway = await startTestServer({
    // Each upstream chunk goes to the client as it comes (no batching of deltas).
    streamIntervalMs: 0,
    models: servers.map((s) => ({ name: MODEL, engine: "vllm", file: "", baseUrl: s.url, upstreamModel: "vllm-model" })),
  });
  openai = gateway.openai;
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  for (const s of servers) {
    for (const socket of s.sockets) socket.destroy();
    await new Promise<void>((resolve) => s.server.close(() => resolve()));
  }
});

interface StreamResult {
  /** Content chunks, in order. */
  pieces: string[];
  finishReason: string | null;
  usage?: OpenAI.Completions.CompletionUsage;
}

/**
 * One streamed chat request; `onPartial` is called once the client has read the whole partial answer (the
 * first server's part), before the client reads on.
 */
async function streamChat(onPartial: () => void): Promise<StreamResult> {
  const result: StreamResult = { pieces: [], finishReason: null };
  const stream = await openai.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: MAX_TOKENS, stream: true, stream_options: { include_usage: true } });
  for await (const c of stream) {
    if (c.usage) result.usage = c.usage;
    const choice = c.choices[0];
    if (!choice) continue;
    if (choice.delta.content) {
      result.pieces.push(choice.delta.content);
      if (result.pieces.join("") === PARTIAL.join("")) onPartial();
    }
    if (choice.finish_reason) result.finishReason = choice.finish_reason;
  }
  return result;
}

describe("vllm preset: mid-stream failover continues the partial answer", () => {
  it("the upstream taking over is asked to continue the final assistant message, and the client sees one stream", async () => {
    received.length = 0;
    let die!: (value: boolean) => void;
    fate = new Promise<boolean>((resolve) => (die = resolve));
    // The first server dies only once the client has read the partial answer: the failure is mid-stream.
    const result = await streamChat(() => die(true));

    // Two requests upstream, one to each server: the second to the instance that took over.
    expect(received.map((r) => r.server)).toHaveLength(2);
    const [first, second] = received;
    expect(new Set([first.server, second.server]).size).toBe(2);

    // The first was the client's request as it was: no continuation.
    expect(first.body.messages).toEqual(MESSAGES);
    expect(first.body).not.toHaveProperty("continue_final_message");
    expect(first.body).not.toHaveProperty("add_generation_prompt");
    expect(first.body.max_tokens).toBe(MAX_TOKENS);

    // The second carries the partial answer as the final assistant message, and tells vLLM to continue it
    // rather than start a new turn; its length limit is what is left of the client's.
    expect(second.body.messages).toEqual([...MESSAGES, { role: "assistant", content: PARTIAL.join("") }]);
    expect(second.body.continue_final_message).toBe(true);
    expect(second.body.add_generation_prompt).toBe(false);
    expect(second.body.max_tokens).toBe(MAX_TOKENS - PARTIAL.length);
    expect(second.body.model).toBe("vllm-model");
    expect(second.body.stream).toBe(true);

    // The client saw one stream: the partial answer, then the rest, each piece once, and a normal end.
    expect(result.pieces).toEqual([...PARTIAL, ...REST]);
    expect(result.finishReason).toBe("stop");
    // Usage counts the original prompt (the continuing request's, less the partial answer it carried) and every
    // token the client received.
    expect(result.usage).toMatchObject({ prompt_tokens: PROMPT_TOKENS, completion_tokens: PARTIAL.length + REST.length });
  });

  it("without a failure the same request goes upstream once, without a continuation", async () => {
    received.length = 0;
    let live!: (value: boolean) => void;
    fate = new Promise<boolean>((resolve) => (live = resolve));
    const result = await streamChat(() => live(false));
    expect(received).toHaveLength(1);
    expect(received[0].body.messages).toEqual(MESSAGES);
    expect(received[0].body).not.toHaveProperty("continue_final_message");
    expect(result.pieces).toEqual([...PARTIAL, ...REST]);
    expect(result.finishReason).toBe("stop");
    expect(result.usage).toMatchObject({ prompt_tokens: PROMPT_TOKENS, completion_tokens: PARTIAL.length + REST.length });
  });
});
