import { clone } from "@bufbuild/protobuf";
import { ModelSpecSchema, type ModelSpec } from "../gen/smmf/v1/model_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { checkProxyParams } from "../engines/checkProxyParams.js";
import { ENGINE_NAMES, isFileEngine } from "../engines/proxyPresets.js";
import { validateModelName } from "../worker/validateModelName.js";

export const MAX_REPLICAS = 1000;
const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;

function bad(param: string, message: string): SmmfError {
  return new SmmfError("invalid_argument", message, { param });
}

function checkRange(param: string, value: number, max: number): void {
  if (value > max) throw bad(param, `'${param}' must be at most ${max}; got ${value}`);
}

function checkLabels(param: string, labels: Record<string, string>): void {
  for (const [key, value] of Object.entries(labels)) {
    if (!LABEL_KEY.test(key)) throw bad(param, `label key '${key.slice(0, 70)}' in '${param}' is invalid: use letters, digits, '.', '_', '/', '-' (at most 63)`);
    if (value.length > 256) throw bad(param, `the value of label '${key}' in '${param}' is longer than 256 characters`);
  }
}

/** Checks a model spec and fills in defaults (engine llama.cpp, chat template auto); returns the completed spec. */
export function validateModelSpec(input: ModelSpec | undefined): ModelSpec {
  if (!input) throw bad("spec", "'spec' is required");
  const spec = clone(ModelSpecSchema, input);
  try {
    validateModelName(spec.name);
  } catch (err) {
    throw bad("name", (err as SmmfError).message.replace("'model' is required", "'name' is required"));
  }
  spec.engine ||= "llama.cpp";
  // A spec from the API may not make a worker read its own environment variables or files (and send what it
  // finds to a base URL of the caller's choosing): upstream keys are the operator's named credentials.
  for (const [field, value] of [["api_key_env", spec.proxy?.apiKeyEnv], ["api_key_file", spec.proxy?.apiKeyFile]] as const) {
    if (value) {
      throw bad(field, `'${field}' cannot be set through the API: name an upstream credential the workers define in 'credential' (their upstreamCredentials setting), whose key is sent only to the base URLs it allows`);
    }
  }
  if (!ENGINE_NAMES.includes(spec.engine)) throw bad("engine", `unknown engine '${spec.engine.slice(0, 64)}'; known engines: ${ENGINE_NAMES.join(", ")}`);
  if (isFileEngine(spec.engine)) {
    if (!spec.source) throw bad("source", "'source' is required: a GGUF file path (relative to the workers' model directory, or absolute) or a file:// URI");
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec.source) && !/^(file|https?):\/\//i.test(spec.source)) {
      throw bad("source", `'source' must be a file path, a file:// URI or an http(s) URL; ${spec.source.split(":")[0]}: sources are not supported`);
    }
    if (/^https?:\/\//i.test(spec.source)) {
      let url: URL;
      try {
        url = new URL(spec.source);
      } catch {
        throw bad("source", "'source' is not a valid URL");
      }
      // The source is stored in etcd and shown to operators: it must carry no secret.
      if (url.username || url.password) throw bad("source", "'source' must not carry credentials");
    }
  } else {
    checkProxyParams(spec);
    checkRange("max_concurrency", spec.proxy?.maxConcurrency ?? 0, 10_000);
    checkRange("pool_size", spec.proxy?.poolSize ?? 0, 10_000);
    checkRange("idle_timeout_ms", spec.proxy?.idleTimeoutMs ?? 0, 86_400_000);
  }
  checkRange("replicas", spec.replicas, MAX_REPLICAS);
  checkRange("weight", spec.weight, 1000);
  const p = spec.llamaCpp;
  if (p) {
    checkRange("context_size", p.contextSize, 1 << 20);
    checkRange("sequences", p.sequences, 256);
    checkRange("threads", p.threads, 1024);
    if (p.gpuLayers !== undefined) checkRange("gpu_layers", p.gpuLayers, 100_000);
    p.chatTemplate ||= "auto";
    if (p.chatTemplate !== "auto" && p.chatTemplate !== "fallback") throw bad("chat_template", "'chat_template' must be 'auto' or 'fallback'");
  }
  checkLabels("placement", spec.placement);
  checkLabels("labels", spec.labels);
  return spec;
}
