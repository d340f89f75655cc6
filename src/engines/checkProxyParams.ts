import type { InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { PROXY_PRESETS } from "./proxyPresets.js";

const CREDENTIAL_HEADERS = new Set(["authorization", "api-key", "x-api-key", "proxy-authorization", "cookie"]);
/** What an upstream credential's name may be (config files and specs alike). */
export const CREDENTIAL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

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
  if (url.username || url.password) throw new SmmfError("invalid_argument", "proxy.base_url must not carry credentials: name an upstream credential of the workers in 'credential'", { param: "base_url" });
  for (const name of Object.keys(p?.headers ?? {})) {
    if (CREDENTIAL_HEADERS.has(name.toLowerCase())) throw new SmmfError("invalid_argument", `proxy.headers must not carry credentials ('${name}'): name an upstream credential of the workers in 'credential'`, { param: "headers" });
  }
  if (p?.credential) {
    if (!CREDENTIAL_NAME.test(p.credential)) throw new SmmfError("invalid_argument", "proxy.credential must be a credential name: letters, digits, '.', '_', '-' (at most 64)", { param: "credential" });
    for (const [field, value] of [["api_key_env", p.apiKeyEnv], ["api_key_file", p.apiKeyFile]] as const) {
      if (value) throw new SmmfError("invalid_argument", `proxy.credential and proxy.${field} exclude each other: the credential says where its key is`, { param: field });
    }
  }
  if (p?.apiKeyEnv && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(p.apiKeyEnv)) throw new SmmfError("invalid_argument", "proxy.api_key_env must be an environment variable name", { param: "api_key_env" });
}
