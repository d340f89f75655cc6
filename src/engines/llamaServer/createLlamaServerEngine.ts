import { create } from "@bufbuild/protobuf";
import type { Agent as HttpAgent } from "node:http";
import { InstanceSpecSchema } from "../../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../../errors/SmmfError.js";
import type { Logger } from "../../telemetry/createLogger.js";
import type { LlamaCppEngineOptions } from "../createLlamaCppEngine.js";
import { DEFAULT_SEQUENCES, MAX_DEFAULT_CONTEXT } from "../llamaCppDefaults.js";
import { createProxyEngine } from "../createProxyEngine.js";
import { defaultThreads } from "../defaultThreads.js";
import type { EngineInstance } from "../Engine.js";
import { LLAMA_SERVER_ENGINE, PROXY_PRESETS } from "../proxyPresets.js";
import { upstreamRequestBody } from "../upstreamRequestBody.js";
import { createUpstreamAgent } from "../createUpstreamAgent.js";
import { readBody, upstreamRequest } from "../upstreamRequest.js";
import { findLlamaServer } from "./llamaServerBuild.js";
import { LlamaServerProcess } from "./LlamaServerProcess.js";

/** llama.cpp's settings (as the in-process engine takes them; `embeddings` and `maxQueue` do not apply), and the instance's names. */
export interface LlamaServerEngineOptions
  extends Pick<LlamaCppEngineOptions, "modelPath" | "contextSize" | "sequences" | "threads" | "gpuLayers" | "gpu" | "chatTemplate" | "prefixCache"> {
  /** The instance's model, for log lines. */
  model: string;
  logger?: Logger;
}

/** How chat requests are written for llama-server (the body's model name is not read). */
const CHAT_BODY = { model: "", preset: PROXY_PRESETS["llama-server"], presetName: "llama-server" };

/** Its own API (not the OpenAI one), for token counts: a small keep-alive pool on the same socket. */
const OWN_API = { keepAlive: true, poolSize: 2, idleTimeoutMs: 30_000 };

/** A POST to llama-server's own API on its socket, through the upstream engine's request path; the JSON answer. */
async function postJson(socketPath: string, agent: HttpAgent, path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
  const upstream = "llama-server";
  const res = await upstreamRequest({ url: new URL(`http://llama-server${path}`), headers: {}, body: JSON.stringify(body), agent, connectTimeoutMs: 5_000, readTimeoutMs: 30_000, signal, upstream, socketPath });
  const text = await readBody(res, upstream, 16 * 1024 * 1024);
  if (res.statusCode !== 200) throw new SmmfError("unavailable", `llama-server answered HTTP ${res.statusCode} to ${path}`);
  try {
    return JSON.parse(text);
  } catch {
    throw new SmmfError("unavailable", `llama-server answered ${path} with malformed JSON`);
  }
}

/** Crashes within this window that make the instance give up instead of restarting its server again. */
const CRASH_WINDOW_MS = 60_000;
const MAX_CRASHES = 3;

/** The model's training context, from its GGUF header (node-llama-cpp's reader, no weights loaded). */
async function trainContextOf(modelPath: string): Promise<number | undefined> {
  let reader;
  try {
    reader = await import("node-llama-cpp");
  } catch {
    return undefined; // SMMF_LLAMA_SERVER without node-llama-cpp: llama-server reads the file itself
  }
  try {
    const info = await reader.readGgufFileInfo(modelPath, { sourceType: "filesystem", logWarnings: false, readTensorInfo: false });
    const context = (info.architectureMetadata as { context_length?: number } | undefined)?.context_length;
    return typeof context === "number" && context > 0 ? context : undefined;
  } catch (err) {
    throw new SmmfError("failed_precondition", `could not load the GGUF model ${modelPath}: ${(err as Error).message}`, { cause: err });
  }
}

/** llama-server's flags for an instance. */
export function llamaServerArgs(o: LlamaServerEngineOptions & { socketPath: string; contextSize: number; sequences: number; threads: number }): string[] {
  const args = ["--model", o.modelPath, "--host", o.socketPath, "--parallel", String(o.sequences), "--ctx-size", String(o.contextSize * o.sequences)];
  args.push("--threads", String(o.threads), "--threads-batch", String(o.threads), "--no-webui");
  if (o.gpu === false) args.push("--n-gpu-layers", "0");
  else if (o.gpuLayers !== undefined) args.push("--n-gpu-layers", String(o.gpuLayers));
  if (o.chatTemplate === "fallback") args.push("--chat-template", "chatml");
  if (o.prefixCache === false) args.push("--no-cache-prompt");
  return args;
}

/**
 * llama.cpp's own server as an engine: the worker runs one `llama-server` per instance (the build of the same
 * llama.cpp that node-llama-cpp ships, `smmf engine build llama.cpp-server`), on a unix socket only it can
 * reach, and relays requests to it as to an OpenAI-compatible upstream (createProxyEngine with the
 * llama-server preset), so that the instance registers, is placed, drains, counts in the metrics and fails
 * like every other. The server's slots are its sequences; its prompt cache is the prefix reuse (cached_tokens
 * in usage). A server that crashes is started again; one that crashes 3 times in a minute fails the instance
 * (`onFailure`), which the worker then unloads (the controller places a new replica of a managed model).
 * Embeddings are not served (llama-server serves either completions or embeddings).
 */
export async function createLlamaServerEngine(options: LlamaServerEngineOptions): Promise<EngineInstance> {
  const binary = findLlamaServer();
  if (!binary) {
    throw new SmmfError(
      "failed_precondition",
      process.env.SMMF_LLAMA_SERVER
        ? `SMMF_LLAMA_SERVER (${process.env.SMMF_LLAMA_SERVER}) is not an executable file`
        : `the ${LLAMA_SERVER_ENGINE} engine needs llama.cpp's server built on this worker: run 'smmf engine build ${LLAMA_SERVER_ENGINE}' there (or set SMMF_LLAMA_SERVER)`,
      { param: "engine" },
    );
  }
  const train = await trainContextOf(options.modelPath);
  const contextSize = options.contextSize || Math.min(train ?? MAX_DEFAULT_CONTEXT, MAX_DEFAULT_CONTEXT);
  const sequences = options.sequences || DEFAULT_SEQUENCES;
  const threads = options.threads || defaultThreads();
  const logger = options.logger;
  const server = await LlamaServerProcess.create(binary, (socketPath) => llamaServerArgs({ ...options, socketPath, contextSize, sequences, threads }));
  try {
    await server.start();
  } catch (err) {
    await server.close();
    throw err;
  }
  logger?.info("llama-server started", { model: options.model, pid: server.pid, binary });

  const spec = create(InstanceSpecSchema, {
    model: options.model,
    engine: "llama-server",
    // The host is never resolved: requests go to the unix socket. A long prompt on a big model may take
    // minutes before the first token: the read timeout is long.
    proxy: { baseUrl: "http://llama-server/v1", maxConcurrency: sequences, poolSize: sequences, contextSize, readTimeoutMs: 10 * 60_000 },
  });
  const relay = await createProxyEngine(spec, { workerId: "", logger, local: { socketPath: server.socketPath, engine: LLAMA_SERVER_ENGINE, name: `llama-server of ${options.model}` } });

  const ownApi = createUpstreamAgent("http:", OWN_API) as HttpAgent;
  const failureListeners = new Set<(err: SmmfError) => void>();
  let crashes: number[] = [];
  let closed = false;
  server.onExit((code, signal) => {
    if (closed) return;
    const now = Date.now();
    crashes = [...crashes.filter((t) => now - t < CRASH_WINDOW_MS), now];
    const { errors, all } = server.lastLines();
    const detail = { model: options.model, code, signal, last: (errors.length > 0 ? errors : all).slice(-3).join(" | ") };
    if (crashes.length >= MAX_CRASHES) {
      logger?.error("llama-server keeps exiting; the instance fails", { ...detail, crashes: crashes.length });
      const err = new SmmfError("unavailable", `llama-server of '${options.model}' exited ${crashes.length} times within a minute`);
      for (const listener of failureListeners) listener(err);
      return;
    }
    logger?.warn("llama-server exited; starting it again", detail);
    // Meanwhile requests fail as unavailable (nothing listens on the socket), and gateways try elsewhere.
    server.start().then(
      () => logger?.info("llama-server started again", { model: options.model, pid: server.pid }),
      (err: unknown) => {
        if (closed) return; // stopped while it was starting again
        logger?.error("llama-server could not be started again; the instance fails", { model: options.model, error: (err as Error).message });
        for (const listener of failureListeners) listener(err instanceof SmmfError ? err : new SmmfError("unavailable", "llama-server could not be started again"));
      },
    );
  });

  return {
    info: { ...relay.info, engine: LLAMA_SERVER_ENGINE, contextSize, embeddingSize: 0, maxConcurrency: sequences },
    inFlight: () => relay.inFlight(),
    generate: (input, sampling, signal) => relay.generate(input, sampling, signal),
    async embed() {
      throw new SmmfError("invalid_argument", "this model instance does not serve embeddings", { param: "model" });
    },
    async countTokens(input) {
      // llama-server's own count: its chat template applied, then its tokenizer (BOS included, as a prompt is).
      const signal = AbortSignal.timeout(30_000);
      const content = input.kind === "prompt"
        ? input.prompt + (input.continuation ?? "")
        : ((await postJson(server.socketPath, ownApi, "/apply-template", upstreamRequestBody(input, {}, CHAT_BODY), signal)) as { prompt: string }).prompt;
      const { tokens } = (await postJson(server.socketPath, ownApi, "/tokenize", { content, add_special: true }, signal)) as { tokens: unknown[] };
      return tokens.length;
    },
    onFailure(listener) {
      failureListeners.add(listener);
    },
    async close() {
      closed = true;
      ownApi.destroy();
      await relay.close();
      await server.close();
    },
  };
}
