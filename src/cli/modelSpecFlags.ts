import { clone, create } from "@bufbuild/protobuf";
import { LlamaCppParamsSchema, ProxyParamsSchema } from "../gen/smmf/v1/instance_pb.js";
import { ModelSpecSchema, type ModelSpec } from "../gen/smmf/v1/model_pb.js";
import { parseLabels } from "../config/loadConfig.js";
import { SmmfError } from "../errors/SmmfError.js";
import { isFileEngine } from "../engines/proxyPresets.js";

/** Flags that set a model's spec (start, update). */
export const SPEC_FLAG_OPTIONS = {
  source: { type: "string" },
  engine: { type: "string" },
  replicas: { type: "string" },
  "context-size": { type: "string" },
  sequences: { type: "string" },
  threads: { type: "string" },
  "gpu-layers": { type: "string" },
  embeddings: { type: "string" },
  "chat-template": { type: "string" },
  "prefix-cache": { type: "string" },
  placement: { type: "string", multiple: true },
  label: { type: "string", multiple: true },
  weight: { type: "string" },
  "base-url": { type: "string" },
  "upstream-model": { type: "string" },
  credential: { type: "string" },
  header: { type: "string", multiple: true },
  "max-concurrency": { type: "string" },
  "connect-timeout-ms": { type: "string" },
  "read-timeout-ms": { type: "string" },
  "pool-size": { type: "string" },
  "idle-timeout-ms": { type: "string" },
  "keep-alive": { type: "string" },
  "api-version": { type: "string" },
} as const;

export const SPEC_FLAGS_HELP = `  --source PATH          GGUF file as the workers see it: relative to their --model-dir, absolute, or file://
  --replicas N           instances wanted (default 1)
  --context-size N       context tokens per sequence (0 = the model's, at most 4096)
  --sequences N          concurrent generations per instance (default 4)
  --threads N            CPU threads per instance (0 = the worker's default)
  --gpu-layers N         layers offloaded to a GPU (default: automatic)
  --embeddings on|off    serve embeddings too (default on)
  --chat-template auto|fallback
  --prefix-cache on|off  reuse cached prompt prefixes between requests (default on)
  --placement KEY=VALUE  only on workers with this label; repeatable
  --label KEY=VALUE      label each instance; repeatable
  --weight N             weight of each instance for weighted load balancing
  --engine NAME          llama.cpp (default), llama.cpp-server (llama.cpp's own server as a child process
                         of the worker; the flags above apply), or an OpenAI-compatible upstream: openai,
                         azure, vllm, tgi, llama-server, ollama, openai-compatible. Upstream settings:
  --base-url URL         API root (default: the preset's; required for azure and openai-compatible)
  --upstream-model NAME  the model's name upstream (default: NAME)
  --credential NAME      one of the workers' upstream credentials (their config's upstreamCredentials): its
                         key is sent, only to the base URLs the credential allows
  --header KEY=VALUE     extra request header (not credentials); repeatable
  --max-concurrency N    requests sent upstream at once per instance (default 16)
  --pool-size N          keep-alive connections to the upstream per instance (default: max concurrency)
  --idle-timeout-ms N    how long an idle connection is kept (default 30000)
  --keep-alive on|off    reuse connections between requests (default on)
  --connect-timeout-ms N, --read-timeout-ms N, --api-version V (azure)`;

export type SpecFlags = { [K in keyof typeof SPEC_FLAG_OPTIONS]?: (typeof SPEC_FLAG_OPTIONS)[K] extends { multiple: true } ? string[] : string };

function count(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new SmmfError("invalid_argument", `--${flag} must be a whole number; got '${value}'`);
  return Number(value);
}

/** `base` (the current spec, or an empty one) with the flags that were given applied. */
export function applySpecFlags(base: ModelSpec, flags: SpecFlags): ModelSpec {
  const spec = clone(ModelSpecSchema, base);
  if (flags.source !== undefined) spec.source = flags.source;
  if (flags.engine !== undefined) spec.engine = flags.engine;
  spec.replicas = count("replicas", flags.replicas) ?? spec.replicas;
  spec.weight = count("weight", flags.weight) ?? spec.weight;
  if (flags.embeddings !== undefined && flags.embeddings !== "on" && flags.embeddings !== "off") throw new SmmfError("invalid_argument", "--embeddings must be on or off");
  if (flags["prefix-cache"] !== undefined && flags["prefix-cache"] !== "on" && flags["prefix-cache"] !== "off") throw new SmmfError("invalid_argument", "--prefix-cache must be on or off");
  if (flags.placement) spec.placement = parseLabels(flags.placement, "--placement");
  if (flags.label) spec.labels = parseLabels(flags.label, "--label");
  if (!isFileEngine(spec.engine)) {
    const proxy = spec.proxy ?? create(ProxyParamsSchema);
    if (flags["base-url"] !== undefined) proxy.baseUrl = flags["base-url"];
    if (flags["upstream-model"] !== undefined) proxy.upstreamModel = flags["upstream-model"];
    if (flags.credential !== undefined) proxy.credential = flags.credential;
    if (flags["api-version"] !== undefined) proxy.apiVersion = flags["api-version"];
    if (flags.header) proxy.headers = parseLabels(flags.header, "--header");
    proxy.maxConcurrency = count("max-concurrency", flags["max-concurrency"]) ?? proxy.maxConcurrency;
    proxy.connectTimeoutMs = count("connect-timeout-ms", flags["connect-timeout-ms"]) ?? proxy.connectTimeoutMs;
    proxy.readTimeoutMs = count("read-timeout-ms", flags["read-timeout-ms"]) ?? proxy.readTimeoutMs;
    proxy.poolSize = count("pool-size", flags["pool-size"]) ?? proxy.poolSize;
    proxy.idleTimeoutMs = count("idle-timeout-ms", flags["idle-timeout-ms"]) ?? proxy.idleTimeoutMs;
    if (flags["keep-alive"] !== undefined) {
      if (flags["keep-alive"] !== "on" && flags["keep-alive"] !== "off") throw new SmmfError("invalid_argument", "--keep-alive must be on or off");
      proxy.keepAlive = flags["keep-alive"] === "on";
    }
    proxy.contextSize = count("context-size", flags["context-size"]) ?? proxy.contextSize;
    if (flags.embeddings !== undefined) proxy.embeddings = flags.embeddings === "on";
    spec.proxy = proxy;
    spec.llamaCpp = undefined;
    return spec;
  }
  const params = spec.llamaCpp ?? create(LlamaCppParamsSchema, { embeddings: true });
  params.contextSize = count("context-size", flags["context-size"]) ?? params.contextSize;
  params.sequences = count("sequences", flags.sequences) ?? params.sequences;
  params.threads = count("threads", flags.threads) ?? params.threads;
  params.gpuLayers = count("gpu-layers", flags["gpu-layers"]) ?? params.gpuLayers;
  if (flags.embeddings !== undefined) params.embeddings = flags.embeddings === "on";
  if (flags["chat-template"] !== undefined) params.chatTemplate = flags["chat-template"];
  if (flags["prefix-cache"] !== undefined) params.prefixCache = flags["prefix-cache"] === "on";
  spec.llamaCpp = params;
  return spec;
}
