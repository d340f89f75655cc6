import type { InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";
import { matchAllowedBaseUrl } from "./matchAllowedBaseUrl.js";
import { PROXY_PRESETS } from "./proxyPresets.js";
import { readApiKey } from "./readApiKey.js";
import type { UpstreamCredential } from "./UpstreamCredential.js";

export interface UpstreamKeyOptions {
  workerId: string;
  /** The worker's upstream credentials (its own configuration). */
  credentials?: readonly UpstreamCredential[];
  logger?: Logger;
}

/** Where an upstream instance's key is read from: a worker credential, the operator's variable or file, or nowhere. */
export interface UpstreamKeySource {
  credential?: UpstreamCredential;
  file: string;
  env: string;
  required: boolean;
}

/**
 * Where the API key of an upstream instance comes from, checked against the worker's rules without reading
 * anything (the worker's estimate, asked before a model is started, runs it too):
 * - `proxy.credential` names one of the worker's credentials, whose key is sent only to the base URLs it
 *   allows: an unknown name, or a base URL outside them, is failed_precondition;
 * - a managed spec (placed by the controller, from an API caller) may not name the worker's environment
 *   variables or files (api_key_env, api_key_file), nor fall back to the preset's variable: no credential,
 *   no key (and a preset that needs one fails);
 * - a spec of the worker's own configuration keeps api_key_env / api_key_file and the preset's variable.
 */
export function upstreamKeySource(spec: Pick<InstanceSpec, "engine" | "proxy" | "managed">, baseUrl: string, options: UpstreamKeyOptions): UpstreamKeySource {
  const preset = PROXY_PRESETS[spec.engine];
  const p = spec.proxy;
  const worker = options.workerId;
  const name = p?.credential ?? "";
  if (name) {
    const credential = options.credentials?.find((c) => c.name === name);
    if (!credential) throw new SmmfError("failed_precondition", `unknown upstream credential '${name}' on worker ${worker}`, { param: "credential" });
    if (!credential.allowedBaseUrls.some((allowed) => matchAllowedBaseUrl(baseUrl, allowed))) {
      throw new SmmfError("failed_precondition", `base_url ${baseUrl} is not allowed for credential '${name}' on worker ${worker}`, { param: "base_url" });
    }
    return { credential, file: credential.file ?? "", env: credential.env ?? "", required: true };
  }
  if (spec.managed) {
    for (const [field, value] of [["api_key_env", p?.apiKeyEnv], ["api_key_file", p?.apiKeyFile]] as const) {
      if (value) {
        throw new SmmfError("failed_precondition", `${field} is only for models in the worker's own configuration; an instance placed by the controller names one of the worker's upstream credentials in 'credential'`, { param: field });
      }
    }
    if (preset.keyRequired) {
      throw new SmmfError("failed_precondition", `engine '${spec.engine}' needs an API key: name one of worker ${worker}'s upstream credentials in 'credential'`, { param: "credential" });
    }
    return { file: "", env: "", required: false };
  }
  return { file: p?.apiKeyFile ?? "", env: p?.apiKeyEnv || preset.apiKeyEnv, required: preset.keyRequired };
}

/** The API key an upstream instance sends (empty: none), read on the worker after upstreamKeySource's checks. */
export function resolveUpstreamKey(spec: Pick<InstanceSpec, "engine" | "proxy" | "managed">, baseUrl: string, options: UpstreamKeyOptions): string {
  const source = upstreamKeySource(spec, baseUrl, options);
  if (!source.credential) return readApiKey(source.file, source.env, source.required, options.workerId);
  try {
    return readApiKey(source.file, source.env, true, options.workerId);
  } catch (err) {
    // Where the key lives is the operator's business: the log says, the caller learns only that it failed.
    options.logger?.warn("cannot read an upstream credential's key", { credential: source.credential.name, error: (err as Error).message });
    throw new SmmfError("failed_precondition", `the key of upstream credential '${source.credential.name}' cannot be read on worker ${options.workerId} (the worker's log says why)`, { param: "credential" });
  }
}
