import { create, toJson } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Etcd3 } from "etcd3";
import { API_KEY_VERSION, type KeyStore } from "../auth/KeyStore.js";
import { EtcdKeyStore } from "../auth/EtcdKeyStore.js";
import { FileKeyStore } from "../auth/FileKeyStore.js";
import { ROLE_NAMES } from "../auth/Authenticator.js";
import { newKeyId, newSecret, sha256Hex } from "../auth/apiKeySecret.js";
import { loadConfig } from "../config/loadConfig.js";
import { SmmfError } from "../errors/SmmfError.js";
import { ApiKeyRole, ApiKeySchema, type ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { parseEndpoints } from "../registry/EtcdRegistry.js";
import { createLogger } from "../telemetry/createLogger.js";
import { authHeaders, EXIT, reportError, serverUrl } from "./adminClient.js";
import { formatTable } from "./formatTable.js";
import { parseCommandArgs } from "./parseCommandArgs.js";

export const KEY_USAGE = `Usage: smmf key create NAME --role inference|reader|admin [--models A,B] [--rpm N] [--tpm N] [--expires 30d]
       smmf key list | revoke NAME | rotate NAME
       smmf key usage --url GATEWAY[,GATEWAY...] [--api-key KEY]

API keys. A revoked key stays listed (and refused); since any key, revoked or not, turns the checks on, revoking
the last key does not open the server again. A key's secret is printed once, by create and rotate, and stored nowhere: the record keeps its
SHA-256. Roles: inference (the OpenAI API and InferenceService, for the key's models: all when --models is
not given), reader (also reads /api/v1 and the request log), admin (also changes models, instances, keys).
Once a key exists, gateways and controllers check every request (see smmf --help: --auth).

The keys live where the servers read them: in etcd with --etcd (every gateway and controller sees a change
within a second), else in the data dir of 'smmf serve' (keys.json, mode 0600; --data-dir, default ./data).
So this command needs what an operator has: access to etcd or to the data dir.

Flags:
  --role ROLE            create: inference, reader or admin
  --models A,B           create: only these models (a model outside the list is answered as unknown)
  --rpm N, --tpm N       create: requests and tokens (prompt + completion) per minute; over them the gateway
                         answers 429 rate_limit_exceeded with Retry-After (each of N gateways admits 1/N)
  --url URLS             usage: the gateways to ask (their /metrics; a reader key with --api-key)
  --expires DURATION     create: e.g. 30d, 12h, 90m (default: never)
  --etcd URLS            etcd endpoints (env SMMF_ETCD)
  --data-dir DIR         the embedded mode's data dir (env SMMF_DATA_DIR)
  --config FILE          read --etcd / --data-dir defaults from this config file
  --json                 print JSON

Exit codes: 0 done, 1 the key store could not be reached, 2 bad usage, 3 no such key, 4 refused (a key of that name exists).
`;

const ROLES: Record<string, ApiKeyRole> = { inference: ApiKeyRole.INFERENCE, reader: ApiKeyRole.READER, admin: ApiKeyRole.ADMIN };
const UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

function usage(message: string): SmmfError {
  return new SmmfError("invalid_argument", message);
}

function count(flag: string, value: string | undefined): number {
  if (value === undefined) return 0;
  if (!/^\d+$/.test(value)) throw usage(`--${flag} must be a whole number; got '${value}'`);
  return Number(value);
}

/** The key, not revoked, of that name or id. */
function byNameOrId(store: KeyStore, which: string | undefined): ApiKey {
  if (!which) throw usage("name the key (its name or id)");
  const key = [...store.keys().values()].find((k) => !k.revokedAt && (k.id === which || k.name === which));
  if (!key) throw new SmmfError("not_found", `no API key named '${which}' (that is not revoked)`);
  return key;
}

function describe(key: ApiKey): Record<string, unknown> {
  const json = toJson(ApiKeySchema, key) as Record<string, unknown>;
  delete json.secretSha256;
  return { ...json, role: ROLE_NAMES[key.role] };
}

interface KeyUsage {
  key: string;
  admitted: number;
  rateLimited: number;
  promptTokens: number;
  completionTokens: number;
}

/** `smmf key usage`: requests and tokens per key, summed over the gateways' /metrics. */
async function keyUsage(urls: string | undefined, json: boolean): Promise<number> {
  const usage = new Map<string, KeyUsage>();
  try {
    for (const url of serverUrl(urls).split(",")) {
      let res: Response;
      try {
        res = await fetch(`${url.replace(/\/+$/, "")}/metrics`, { headers: authHeaders() });
      } catch (err) {
        throw new SmmfError("unavailable", `cannot reach ${url}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`);
      }
      const text = await res.text();
      if (!res.ok) throw new SmmfError(res.status === 401 ? "invalid_api_key" : res.status === 403 ? "permission_denied" : "unavailable", `${url}/metrics answered HTTP ${res.status}: ${text.slice(0, 200)}`);
      for (const m of text.matchAll(/^smmf_key_(requests|tokens)_total\{key="((?:[^"\\]|\\.)*)",(outcome|type)="(\w+)"\} (\S+)$/gm)) {
        const name = m[2];
        let u = usage.get(name);
        if (!u) usage.set(name, (u = { key: name, admitted: 0, rateLimited: 0, promptTokens: 0, completionTokens: 0 }));
        const value = Number(m[5]);
        if (m[4] === "admitted") u.admitted += value;
        else if (m[4] === "rate_limited") u.rateLimited += value;
        else if (m[4] === "prompt") u.promptTokens += value;
        else if (m[4] === "completion") u.completionTokens += value;
      }
    }
  } catch (err) {
    return reportError("key usage", err);
  }
  const rows = [...usage.values()].sort((a, b) => a.key.localeCompare(b.key));
  process.stdout.write(
    json
      ? `${JSON.stringify(rows, null, 2)}\n`
      : formatTable(["KEY", "REQUESTS", "RATE-LIMITED", "PROMPT TOKENS", "COMPLETION TOKENS"], rows.map((u) => [u.key, String(u.admitted), String(u.rateLimited), String(u.promptTokens), String(u.completionTokens)])),
  );
  return EXIT.ok;
}

/** `smmf key ...`: creates, lists, revokes and rotates API keys in the key store the servers watch. */
export async function runKeyCommand(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  const parsed = parseCommandArgs(`key ${action ?? ""}`.trim(), KEY_USAGE, rest, {
    role: { type: "string" },
    models: { type: "string" },
    rpm: { type: "string" },
    tpm: { type: "string" },
    expires: { type: "string" },
    etcd: { type: "string" },
    "data-dir": { type: "string" },
    config: { type: "string" },
    url: { type: "string" },
    json: { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  if (!action || !["create", "list", "revoke", "rotate", "usage"].includes(action)) {
    process.stderr.write(`smmf key: say create, list, revoke, rotate or usage\n\n${KEY_USAGE}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (action === "usage") return keyUsage(values.url, values.json ?? false);
  const logger = createLogger("error", "key");
  let store: KeyStore | undefined;
  let client: Etcd3 | undefined;
  try {
    const config = loadConfig({ config: values.config, etcd: values.etcd, "data-dir": values["data-dir"] });
    if (config.etcd) {
      client = new Etcd3({ hosts: parseEndpoints(config.etcd), dialTimeout: 2_000 });
      store = new EtcdKeyStore(client, logger);
    } else {
      store = new FileKeyStore(config.dataDir, logger, { watch: false });
    }
    await store.ready();
    const print = (value: unknown, text: string) => process.stdout.write(values.json ? `${JSON.stringify(value, null, 2)}\n` : text);
    switch (action) {
      case "create": {
        const name = positionals[0];
        if (!name || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw usage("smmf key create NAME: a name of letters, digits, '.', '_' and '-' (at most 64)");
        const role = ROLES[values.role ?? ""];
        if (!role) throw usage("--role must be inference, reader or admin");
        if ([...store.keys().values()].some((k) => k.name === name && !k.revokedAt)) throw new SmmfError("already_exists", `an API key named '${name}' exists; revoke or rotate it`);
        let expiresAt;
        if (values.expires !== undefined) {
          const m = /^(\d+)([mhd])$/.exec(values.expires);
          if (!m || Number(m[1]) === 0) throw usage(`--expires takes a duration like 30d, 12h or 90m; got '${values.expires}'`);
          expiresAt = timestampFromMs(Date.now() + Number(m[1]) * UNITS[m[2]]);
        }
        const id = newKeyId();
        const secret = newSecret(id);
        const models = values.models ? values.models.split(",").map((s) => s.trim()).filter(Boolean) : [];
        const key = create(ApiKeySchema, { id, name, role, models, rpm: count("rpm", values.rpm), tpm: count("tpm", values.tpm), createdAt: timestampFromMs(Date.now()), expiresAt, secretSha256: sha256Hex(secret), version: API_KEY_VERSION });
        await store.put(key);
        print({ ...describe(key), secret }, `created API key '${name}' (id ${id}, role ${ROLE_NAMES[role]}). Its secret, shown only now:\n${secret}\n`);
        return EXIT.ok;
      }
      case "list": {
        const keys = [...store.keys().values()].sort((a, b) => a.name.localeCompare(b.name));
        const when = (t: ApiKey["createdAt"]) => (t ? new Date(timestampMs(t)).toISOString().replace(/\.\d+Z$/, "Z") : "never");
        print(
          keys.map(describe),
          formatTable(
            ["NAME", "ID", "ROLE", "MODELS", "RPM", "TPM", "CREATED", "EXPIRES", "REVOKED"],
            keys.map((k) => [k.name, k.id, ROLE_NAMES[k.role], k.models.join(",") || "*", String(k.rpm || "-"), String(k.tpm || "-"), when(k.createdAt), when(k.expiresAt), k.revokedAt ? when(k.revokedAt) : "-"]),
          ),
        );
        return EXIT.ok;
      }
      case "revoke": {
        const key = byNameOrId(store, positionals[0]);
        const revoked = create(ApiKeySchema, { ...key, revokedAt: timestampFromMs(Date.now()) });
        await store.put(revoked);
        print({ revoked: describe(revoked) }, `revoked API key '${key.name}' (id ${key.id})\n`);
        return EXIT.ok;
      }
      default: {
        const key = byNameOrId(store, positionals[0]);
        const secret = newSecret(key.id);
        const rotated = create(ApiKeySchema, { ...key, secretSha256: sha256Hex(secret) });
        await store.put(rotated);
        print({ ...describe(rotated), secret }, `rotated API key '${key.name}' (id ${key.id}); the old secret no longer works. The new one, shown only now:\n${secret}\n`);
        return EXIT.ok;
      }
    }
  } catch (err) {
    return reportError(`key ${action}`, err);
  } finally {
    await store?.close();
    client?.close();
  }
}
