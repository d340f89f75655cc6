import type { InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { PROXY_PRESETS } from "./proxyPresets.js";

const CREDENTIAL_HEADERS = new Set(["authorization", "api-key", "x-api-key", "proxy-authorization", "cookie"]);

/** Checks the upstream settings of a spec that names a proxy preset; throws invalid_argument naming the field. */
export function checkProxyParams(spec: Pick<InstanceSpec, "engine" | "proxy">): void {
  const preset = PROXY_PRESETS[spec.engine];
  const p = spec.proxy;
  const base = p?.baseUrl || preset.baseUrl;
  if (!base) throw new SmmfError("invalid_argument", `engine '${spec.engine}' needs proxy.base_url`, { param: "base_url" });
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new SmmfError("invalid_argument", "proxy.base_url is not a URL", { param: "base_url" });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new SmmfError("invalid_argument", "proxy.base_url must be http:// or https://", { param: "base_url" });
  if (url.username || url.password) throw new SmmfError("invalid_argument", "proxy.base_url must not carry credentials: use api_key_env or api_key_file", { param: "base_url" });
  for (const name of Object.keys(p?.headers ?? {})) {
    if (CREDENTIAL_HEADERS.has(name.toLowerCase())) throw new SmmfError("invalid_argument", `proxy.headers must not carry credentials ('${name}'): use api_key_env or api_key_file`, { param: "headers" });
  }
  if (p?.apiKeyEnv && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(p.apiKeyEnv)) throw new SmmfError("invalid_argument", "proxy.api_key_env must be an environment variable name", { param: "api_key_env" });
}
