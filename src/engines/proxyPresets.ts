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
}

const local = { apiKeyEnv: "", keyRequired: false, auth: "bearer" } as const;

/** The presets of the OpenAI-compatible engine; the engine name of an instance is its preset. */
export const PROXY_PRESETS: Readonly<Record<string, ProxyPreset>> = {
  openai: { baseUrl: "https://api.openai.com/v1", apiKeyEnv: "OPENAI_API_KEY", keyRequired: true, auth: "bearer", topK: false, continueFinalMessage: false },
  azure: { baseUrl: "", apiKeyEnv: "AZURE_OPENAI_API_KEY", keyRequired: true, auth: "api-key", apiVersion: "2024-10-21", topK: false, continueFinalMessage: false },
  vllm: { ...local, baseUrl: "http://127.0.0.1:8000/v1", topK: true, continueFinalMessage: true },
  tgi: { ...local, baseUrl: "http://127.0.0.1:8080/v1", topK: false, continueFinalMessage: false },
  "llama-server": { ...local, baseUrl: "http://127.0.0.1:8080/v1", topK: true, continueFinalMessage: false },
  ollama: { ...local, baseUrl: "http://127.0.0.1:11434/v1", topK: false, continueFinalMessage: false },
  "openai-compatible": { ...local, baseUrl: "", topK: false, continueFinalMessage: false },
};

export function isProxyEngine(engine: string): boolean {
  return Object.hasOwn(PROXY_PRESETS, engine);
}

/** Every engine name SMMF knows: llama.cpp and the upstream presets. */
export const ENGINE_NAMES: readonly string[] = ["llama.cpp", ...Object.keys(PROXY_PRESETS)];
