import { resolve } from "node:path";
import { SmmfError } from "../errors/SmmfError.js";
import { CREDENTIAL_NAME } from "./checkProxyParams.js";
import { checkAllowedBaseUrl } from "./matchAllowedBaseUrl.js";
import type { UpstreamCredential } from "./UpstreamCredential.js";

const KEYS = new Set(["name", "env", "file", "allowedBaseUrls"]);

/**
 * The `upstreamCredentials` of a config file, checked: an array of `{ name, env | file, allowedBaseUrls }`
 * with unique names, exactly one of env and file, and at least one valid allowed base URL each (files
 * relative to `baseDir`, the config file's folder). Throws invalid_argument naming the entry and the field.
 */
export function parseUpstreamCredentials(value: unknown, where: string, baseDir: string): UpstreamCredential[] {
  const bad = (message: string) => new SmmfError("invalid_argument", `${where}: ${message}`, { param: "upstreamCredentials" });
  if (!Array.isArray(value)) throw bad("'upstreamCredentials' must be an array of { name, env or file, allowedBaseUrls }");
  const names = new Set<string>();
  return value.map((entry: unknown, i) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw bad(`upstreamCredentials[${i}] must be an object`);
    const e = entry as Record<string, unknown>;
    const at = `upstreamCredentials[${i}]${typeof e.name === "string" ? ` ('${e.name.slice(0, 64)}')` : ""}`;
    for (const key of Object.keys(e)) if (!KEYS.has(key)) throw bad(`${at}: unknown key '${key.slice(0, 64)}' (known: name, env, file, allowedBaseUrls)`);
    if (typeof e.name !== "string" || !CREDENTIAL_NAME.test(e.name)) throw bad(`${at}: 'name' must be letters, digits, '.', '_', '-' (at most 64)`);
    if (names.has(e.name)) throw bad(`${at}: the name '${e.name}' is used twice`);
    names.add(e.name);
    if ((e.env === undefined) === (e.file === undefined)) throw bad(`${at}: give exactly one of 'env' (an environment variable) and 'file' (a file holding the key)`);
    if (e.env !== undefined && (typeof e.env !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(e.env))) throw bad(`${at}: 'env' must be an environment variable name`);
    if (e.file !== undefined && (typeof e.file !== "string" || !e.file)) throw bad(`${at}: 'file' must be a path`);
    const urls = e.allowedBaseUrls;
    if (!Array.isArray(urls) || urls.length === 0 || !urls.every((u) => typeof u === "string")) {
      throw bad(`${at}: 'allowedBaseUrls' must be a non-empty array of base URLs the key may be sent to`);
    }
    for (const url of urls as string[]) {
      try {
        checkAllowedBaseUrl(url);
      } catch (err) {
        throw bad(`${at}: ${(err as Error).message}`);
      }
    }
    return {
      name: e.name,
      ...(e.env !== undefined ? { env: e.env as string } : { file: resolve(baseDir, e.file as string) }),
      allowedBaseUrls: [...(urls as string[])],
    };
  });
}
