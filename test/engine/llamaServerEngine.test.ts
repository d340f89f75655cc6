import { EventEmitter, once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/config/loadConfig.js";
import type { SmmfConfig } from "../../src/config/SmmfConfig.js";
import { startEmbedded, type Embedded } from "../../src/embedded/startEmbedded.js";
import { createLlamaServerEngine } from "../../src/engines/llamaServer/createLlamaServerEngine.js";
import { InstanceSpecSchema, InstanceState } from "../../src/gen/smmf/v1/instance_pb.js";
import type { GenerationEvent } from "../../src/engines/Engine.js";
import { estimateMemory } from "../../src/engines/estimateMemory.js";
import { create } from "@bufbuild/protobuf";
import { createLogger } from "../../src/telemetry/createLogger.js";
import { llamaServerChildren, processAlive, requireLlamaServer } from "../helpers/llamaServerBinary.js";
import { testModelPath } from "../helpers/testModel.js";

// The llama.cpp-server engine: llama.cpp's own llama-server as a child process per instance, behind the same
// gateway as every engine. `cpp` is the same model on the in-process llama.cpp engine, to compare answers with.

type Usage = OpenAI.CompletionUsage & { prompt_tokens_details?: { cached_tokens?: number } };

interface Server {
  embedded: Embedded;
  openai: OpenAI;
  /** Every log line, as its JSON object, as an event named after its message. */
  logs: EventEmitter;
}

async function start(models: SmmfConfig["models"]): Promise<Server> {
  const logs = new EventEmitter();
  const config: SmmfConfig = { ...DEFAULTS, port: 0, workerPort: 0, gpu: "off", threads: 1, sequences: 2, models, logLevel: "info" };
  const logger = createLogger("info", "test", (line) => {
    const entry = JSON.parse(line) as { msg: string };
    logs.emit(entry.msg, entry);
  });
  const embedded = await startEmbedded(config, logger);
  return { embedded, logs, openai: new OpenAI({ baseURL: `${embedded.gateway.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 }) };
}

/** The unix socket a llama-server process listens on (its --host). */
function socketOf(pid: number): string {
  const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  return args[args.indexOf("--host") + 1];
}

let server: Server;
/** llama-server processes of this test process, less those of `server`. */
let others: () => number[];

beforeAll(async () => {
  requireLlamaServer();
  server = await start([
    { name: "srv", file: testModelPath(), engine: "llama.cpp-server" },
    { name: "cpp", file: testModelPath(), engine: "llama.cpp" },
  ]);
  const own = new Set(llamaServerChildren());
  others = () => llamaServerChildren().filter((pid) => !own.has(pid));
});
afterAll(async () => {
  await server?.embedded.close();
});

const PROMPT = "Once upon a time there was a little girl named Lily. She";

describe("llama.cpp-server engine", () => {
  it("serves completions and chat through the gateway, greedy answers the same as the in-process llama.cpp engine", async () => {
    const ask = (model: string) => server.openai.completions.create({ model, prompt: PROMPT, max_tokens: 32, temperature: 0 });
    const [srv, cpp] = await Promise.all([ask("srv"), ask("cpp")]);
    expect(srv.choices[0].text.length).toBeGreaterThan(20);
    expect(srv.choices[0].text).toBe(cpp.choices[0].text);
    expect(srv.usage).toMatchObject({ prompt_tokens: cpp.usage!.prompt_tokens, completion_tokens: 32 });
    expect(srv.choices[0].finish_reason).toBe("length");

    const stream = await server.openai.chat.completions.create({
      model: "srv",
      messages: [{ role: "user", content: "Tell me a story about a cat." }],
      max_tokens: 16,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage ??= chunk.usage ?? undefined;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(usage?.completion_tokens).toBe(16);
    expect(usage?.prompt_tokens).toBeGreaterThan(5);
  });

  it("registers its instance like every engine: engine, slots and context in the record, and runs one llama-server", async () => {
    const record = server.embedded.worker.worker.list().find((i) => i.model === "srv")!;
    expect(record).toMatchObject({ engine: "llama.cpp-server", state: InstanceState.ONLINE, maxConcurrency: 2, embeddingSize: 0 });
    expect(record.contextSize).toBeGreaterThan(0);
    expect(llamaServerChildren()).toHaveLength(1);
    const models = await server.openai.models.list();
    expect(models.data.map((m) => m.id).sort()).toEqual(["cpp", "srv"]);
  });

  it("reuses a prompt's prefix from llama-server's cache and reports it in cached_tokens", async () => {
    const story = `${PROMPT} loved to play in the park with her friends. One day she found a shiny red ball under a tree.`;
    const first = await server.openai.completions.create({ model: "srv", prompt: story, max_tokens: 4, temperature: 0 });
    const again = await server.openai.completions.create({ model: "srv", prompt: `${story} She picked it up and`, max_tokens: 4, temperature: 0 });
    const cached = (again.usage as Usage).prompt_tokens_details?.cached_tokens ?? 0;
    // The whole first prompt (less its last token, which is evaluated again for its logits) came from the cache.
    expect(cached).toBeGreaterThanOrEqual(first.usage!.prompt_tokens - 1);
    expect(cached).toBeLessThan(again.usage!.prompt_tokens);
  });

  it("counts tokens as llama-server does: the count equals the prompt_tokens of the same request", async () => {
    const engine = server.embedded.worker.worker.resolve("srv").engine;
    const messages = [
      { role: "system" as const, content: "You are a storyteller." },
      { role: "user" as const, content: "Tell me about a dog named Max." },
    ];
    const chat = await server.openai.chat.completions.create({ model: "srv", messages, max_tokens: 2, temperature: 0 });
    expect(await engine.countTokens({ kind: "chat", messages })).toBe(chat.usage!.prompt_tokens);
    const completion = await server.openai.completions.create({ model: "srv", prompt: PROMPT, max_tokens: 2, temperature: 0 });
    expect(await engine.countTokens({ kind: "prompt", prompt: PROMPT })).toBe(completion.usage!.prompt_tokens);
    // Not the rough estimate of a remote upstream (four characters a token).
    expect(completion.usage!.prompt_tokens).not.toBe(Math.ceil(PROMPT.length / 4));
  });

  it("refuses what it does not serve in the API's own error shape: embeddings, a prompt longer than its context", async () => {
    const embeddings = await fetch(`${server.embedded.gateway.url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "srv", input: "hi" }) });
    expect(embeddings.status).toBe(400);
    expect(((await embeddings.json()) as { error: { message: string } }).error.message).toMatch(/does not serve embeddings/);
    const long = "one two three four five six seven eight nine ten ".repeat(400);
    const err = await server.openai.completions.create({ model: "srv", prompt: long, max_tokens: 8 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err).toMatchObject({ status: 400, code: "context_length_exceeded" });
  });
});

describe("llama.cpp-server engine: failures", () => {
  it("fails to load a file that is not a GGUF model with a clear error, and leaves no process behind", async () => {
    const dir = mkdtempSync(join(tmpdir(), "smmf-bad-gguf-"));
    try {
      const bad = join(dir, "bad.gguf");
      writeFileSync(bad, "this is not a GGUF file");
      const before = others().length;
      const err = await createLlamaServerEngine({ model: "bad", modelPath: bad, threads: 1 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "failed_precondition" });
      expect((err as Error).message).toContain(bad);
      expect(others()).toHaveLength(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("says how to get llama-server when it is missing", async () => {
    const saved = process.env.SMMF_LLAMA_SERVER;
    process.env.SMMF_LLAMA_SERVER = "/nonexistent/llama-server";
    try {
      const err = await createLlamaServerEngine({ model: "m", modelPath: testModelPath(), threads: 1 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "failed_precondition", message: "SMMF_LLAMA_SERVER (/nonexistent/llama-server) is not an executable file" });
    } finally {
      if (saved === undefined) delete process.env.SMMF_LLAMA_SERVER;
      else process.env.SMMF_LLAMA_SERVER = saved;
    }
  });

  it("starts a crashed llama-server again, and unloads the instance when it keeps crashing", async () => {
    const crashing = await start([{ name: "crashy", file: testModelPath(), engine: "llama.cpp-server" }]);
    try {
      const ask = () => crashing.openai.completions.create({ model: "crashy", prompt: PROMPT, max_tokens: 8, temperature: 0 });
      const answer = (await ask()).choices[0].text;
      // Two crashes: each time it is started again, and answers as before.
      for (let i = 0; i < 2; i++) {
        const [pid] = others();
        const restarted = once(crashing.logs, "llama-server started again");
        process.kill(pid, "SIGKILL");
        await restarted;
        expect(others()).not.toContain(pid);
        expect((await ask()).choices[0].text).toBe(answer);
      }
      // A third crash within the minute: the instance fails, and the worker unloads it.
      const unloaded = once(crashing.logs, "instance unloaded");
      const failed = once(crashing.logs, "instance failed; unloading it");
      process.kill(others()[0], "SIGKILL");
      await Promise.all([failed, unloaded]);
      expect(crashing.embedded.worker.worker.list()).toEqual([]);
      const err = await ask().catch((e: unknown) => e);
      expect(err).toMatchObject({ status: 404, code: "model_not_found" });
      expect(others()).toEqual([]);
    } finally {
      await crashing.embedded.close();
    }
  });

  it("drains: requests in flight finish, then its llama-server exits and its socket folder is removed", async () => {
    const draining = await start([{ name: "drainy", file: testModelPath(), engine: "llama.cpp-server" }]);
    try {
      const [pid] = others();
      const socketDir = dirname(socketOf(pid));
      expect(existsSync(socketDir)).toBe(true);
      const instance = draining.embedded.worker.worker.list()[0];
      const stream = await draining.openai.completions.create({ model: "drainy", prompt: PROMPT, max_tokens: 200, temperature: 0, stream: true });
      const chunks = stream[Symbol.asyncIterator]();
      // The request is running before the drain starts.
      expect((await chunks.next()).done).toBe(false);
      const unloaded = once(draining.logs, "instance unloaded");
      await draining.embedded.worker.worker.setState(instance.instanceId, InstanceState.DRAINING);
      let tokens = 1;
      for (let r = await chunks.next(); !r.done; r = await chunks.next()) tokens += r.value.choices[0]?.text ? 1 : 0;
      expect(tokens).toBeGreaterThan(100);
      await unloaded;
      expect(processAlive(pid)).toBe(false);
      expect(others()).toEqual([]);
      expect(existsSync(socketDir)).toBe(false);
    } finally {
      await draining.embedded.close();
    }
  });
});

describe("llama.cpp-server engine: socket", () => {
  it("listens only on a unix socket in a private folder, removed when the instance stops", async () => {
    const engine = await createLlamaServerEngine({ model: "m", modelPath: testModelPath(), threads: 1, sequences: 1 });
    const [pid] = others();
    const socket = socketOf(pid);
    expect(socket).toMatch(/\/smmf-llama-server-[^/]+\/llama-server\.sock$/);
    expect(statSync(dirname(socket)).mode & 0o777).toBe(0o700);
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).not.toContain("--port");
    // Nothing of the worker's environment reaches it (no secret, no LLAMA_ARG_* overriding its flags).
    const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean);
    expect(environ.map((e) => e.split("=")[0]).sort()).toEqual(["LANG", "PATH"]);
    await engine.close();
    expect(processAlive(pid)).toBe(false);
    expect(existsSync(dirname(socket))).toBe(false);
  });
});

describe("llama.cpp-server engine: settings", () => {
  it("takes llama.cpp's settings: prefix cache off, the fallback chat template", async () => {
    const engine = await createLlamaServerEngine({ model: "m", modelPath: testModelPath(), threads: 1, sequences: 1, prefixCache: false, chatTemplate: "fallback" });
    try {
      const [pid] = others();
      const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      expect(args).toEqual(expect.arrayContaining(["--no-cache-prompt", "--chat-template", "chatml", "--parallel", "1"]));
      const run = async () => {
        let done: GenerationEvent | undefined;
        for await (const event of engine.generate({ kind: "prompt", prompt: PROMPT }, { maxTokens: 4, temperature: 0 }, AbortSignal.timeout(30_000))) if (event.type === "done") done = event;
        return done as Extract<GenerationEvent, { type: "done" }>;
      };
      await run();
      // The same prompt again on the one slot: nothing reused.
      expect((await run()).cachedPromptTokens ?? 0).toBe(0);
      // ChatML: the chat prompt is in its markers.
      const messages = [{ role: "user" as const, content: "Hi" }];
      expect(await engine.countTokens({ kind: "chat", messages })).toBeGreaterThan(await engine.countTokens({ kind: "prompt", prompt: "Hi" }) + 4);
    } finally {
      await engine.close();
    }
  });

  it("estimates its memory as the llama.cpp engine does, less the embedding context", async () => {
    const spec = (engine: string, embeddings: boolean) => create(InstanceSpecSchema, { model: "m", engine, source: testModelPath(), llamaCpp: { sequences: 4, contextSize: 256, embeddings } });
    const server = await estimateMemory(spec("llama.cpp-server", true), { gpu: false, threads: 1 });
    expect(server).toBe(await estimateMemory(spec("llama.cpp", false), { gpu: false, threads: 1 }));
    expect(server).toBeLessThan(await estimateMemory(spec("llama.cpp", true), { gpu: false, threads: 1 }));
  });

  it("refuses the completions fields llama-server does not honour, before anything is generated", async () => {
    const err = await server.openai.completions.create({ model: "srv", prompt: PROMPT, max_tokens: 4, echo: true }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, param: "echo" });
  });
});

