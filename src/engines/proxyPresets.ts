/**
 * A request field that an upstream refuses, or silently ignores where ignoring it would change the answer
 * the client gets. A request that sets it to a value other than a neutral one is refused with
 * invalid_argument before anything goes upstream; a neutral value (one that asks for nothing) is left out of
 * the upstream request.
 */
export interface UnsupportedField {
  /** The request field, as the OpenAI API names it. */
  field: string;
  /** Whether a value asks for nothing (unset counts as neutral too). */
  neutral: (value: unknown) => boolean;
}

/** How SMMF talks to one kind of OpenAI-compatible upstream. */
export interface ProxyPreset {
  /** API root when the settings give none; empty: base_url is required. */
  baseUrl: string;
  /** Environment variable read for the API key when the settings name none; empty: no key by default. */
  apiKeyEnv: string;
  /** The upstream refuses requests without a key. */
  keyRequired: boolean;
  /** `Authorization: Bearer KEY`, or Azure's `api-key: KEY`. */
  auth: "bearer" | "api-key";
  /** Sends `api-version` as a query parameter (Azure). */
  apiVersion?: string;
  /** Accepts `top_k` in the request body. */
  topK: boolean;
  /** Accepts vLLM's `continue_final_message` to continue a partial assistant message (mid-stream failover). */
  continueFinalMessage: boolean;
  /**
   * Chat answers' length limit goes as `max_completion_tokens` (OpenAI: `max_tokens` is deprecated for chat,
   * and its reasoning models refuse it); otherwise as `max_tokens`, which every other server reads.
   */
  maxCompletionTokens?: boolean;
  /** Request fields this upstream is known not to honour (see UnsupportedField); none: every field goes as sent. */
  unsupported?: readonly UnsupportedField[];
}

const local = { apiKeyEnv: "", keyRequired: false, auth: "bearer" } as const;

const unset = (v: unknown) => v === undefined || v === null;
/** `n`: 0 and 1 both mean one answer. */
const ONE_ANSWER: UnsupportedField = { field: "n", neutral: (v) => unset(v) || v === 0 || v === 1 };

/** The presets of the OpenAI-compatible engine; the engine name of an instance is its preset. */
export const PROXY_PRESETS: Readonly<Record<string, ProxyPreset>> = {
  openai: { baseUrl: "https://api.openai.com/v1", apiKeyEnv: "OPENAI_API_KEY", keyRequired: true, auth: "bearer", topK: false, continueFinalMessage: false, maxCompletionTokens: true },
  azure: { baseUrl: "", apiKeyEnv: "AZURE_OPENAI_API_KEY", keyRequired: true, auth: "api-key", apiVersion: "2024-10-21", topK: false, continueFinalMessage: false },
  vllm: { ...local, baseUrl: "http://127.0.0.1:8000/v1", topK: true, continueFinalMessage: true },
  // TGI ignores `n` and always answers one choice (huggingface/text-generation-inference issue #2914, open;
  // huggingface/huggingface_hub issue #2931: "TGI does not support the parameter n").
  tgi: { ...local, baseUrl: "http://127.0.0.1:8080/v1", topK: false, continueFinalMessage: false, unsupported: [ONE_ANSWER] },
  // llama-server refuses these completions fields (tools/server/server-common.cpp, oaicompat_completion_params_parse:
  // "Only no echo is supported", "Unsupported param: best_of" / "suffix"), as HTTP 500, which would read as an
  // unavailable upstream. (`n` it honours in current versions; older ones refused n != 1.)
  "llama-server": {
    ...local,
    baseUrl: "http://127.0.0.1:8080/v1",
    topK: true,
    continueFinalMessage: false,
    unsupported: [
      { field: "echo", neutral: (v) => unset(v) || v === false },
      { field: "best_of", neutral: (v) => unset(v) || v === 1 },
      { field: "suffix", neutral: (v) => unset(v) || v === "" },
    ],
  },
  // Ollama's OpenAI compatibility lists its supported request fields (docs.ollama.com/api/openai-compatibility):
  // `n` is not among them, and unknown fields are ignored, so n > 1 would silently give one choice.
  ollama: { ...local, baseUrl: "http://127.0.0.1:11434/v1", topK: false, continueFinalMessage: false, unsupported: [ONE_ANSWER] },
  "openai-compatible": { ...local, baseUrl: "", topK: false, continueFinalMessage: false },
};

export function isProxyEngine(engine: string): boolean {
  return Object.hasOwn(PROXY_PRESETS, engine);
}

/** llama.cpp's own server, run by the worker as a child process per instance (see createLlamaServerEngine). */
export const LLAMA_SERVER_ENGINE = "llama.cpp-server";

/** Engines that load a GGUF file of the worker (`source`) rather than call an upstream. */
export function isFileEngine(engine: string): boolean {
  return !engine || engine === "llama.cpp" || engine === LLAMA_SERVER_ENGINE;
}

/** Every engine name SMMF knows: llama.cpp, llama.cpp's server and the upstream presets. */
export const ENGINE_NAMES: readonly string[] = ["llama.cpp", LLAMA_SERVER_ENGINE, ...Object.keys(PROXY_PRESETS)];
