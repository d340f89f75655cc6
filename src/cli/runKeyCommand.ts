import { ETCD_CALL_OPTIONS } from "../registry/etcdCallOptions.js";
import { toJson } from "@bufbuild/protobuf";
import { etcdSecurityOf } from "../registry/etcdSecurityOf.js";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { Etcd3 } from "etcd3";
import type { KeyStore } from "../auth/KeyStore.js";
import { EtcdKeyStore } from "../auth/EtcdKeyStore.js";
import { FileKeyStore } from "../auth/FileKeyStore.js";
import { ROLE_NAMES } from "../auth/Authenticator.js";
import { createKey, revokeKey, rotateKey, type NewKey } from "../auth/keyOperations.js";
import { loadConfig } from "../config/loadConfig.js";
import { SmmfError } from "../errors/SmmfError.js";
import { ApiKeyRole, ApiKeySchema, KeyService, type ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { parseEndpoints } from "../registry/EtcdRegistry.js";
import { createLogger } from "../telemetry/createLogger.js";
import { adminTransport, authHeaders, EXIT, reportError, serverUrl } from "./adminClient.js";
import { formatTable } from "./formatTable.js";
import { parseCommandArgs } from "./parseCommandArgs.js";

export const KEY_USAGE = `Usage: smmf key create NAME --role inference|reader|admin [--models A,B] [--rpm N] [--tpm N] [--expires 30d]
       smmf key list | revoke NAME | rotate NAME        (through a server: --url, --api-key)
       smmf key create NAME --role admin --bootstrap [--etcd URLS | --data-dir DIR]   (the first key)
       smmf key usage --url GATEWAY[,GATEWAY...] [--api-key KEY]

API keys. A key's secret is printed once, by create and rotate, and stored nowhere: the record keeps its
SHA-256. Roles: inference (the OpenAI API and InferenceService, for the key's models: all when --models is
not given), reader (also reads /api/v1 and the request log), admin (also changes models, instances, keys).
Once a key exists, gateways and controllers check every request (see smmf --help: --auth). A revoked key
stays listed, and refused; since any key, revoked or not, keeps the checks on, revoking the last key does not
open the server again.

The commands go through a gateway or controller (KeyService; the admin role, by --api-key or SMMF_API_KEY),
which writes the keys where every server reads them: etcd (each gateway and controller sees a change within
a second), or the data dir of 'smmf serve'. With --bootstrap they write that store directly instead — for the
first key of a server that listens beyond loopback and so refuses to start without one; that needs what an
operator has: access to etcd (--etcd) or to the data dir (--data-dir, default ./data; keys.json, mode 0600).

Flags:
  --role ROLE            create: inference, reader or admin
  --models A,B           create: only these models (a model outside the list is answered as unknown)
  --rpm N, --tpm N       create: requests and tokens (prompt + completion) per minute; over them the gateway
                         answers 429 rate_limit_exceeded with Retry-After (each of N gateways admits 1/N)
  --expires DURATION     create: e.g. 30d, 12h, 90m (default: never)
  --url URL              the gateway or controller (default http://127.0.0.1:8000; env SMMF_URL); usage:
                         the gateways to ask, comma-separated (their /metrics)
  --api-key KEY          an admin key (env SMMF_API_KEY); usage: a reader key
  --bootstrap            write the key store directly, with:
  --etcd URLS            etcd endpoints (env SMMF_ETCD)
  --data-dir DIR         the embedded mode's data dir (env SMMF_DATA_DIR)
  --config FILE          read --etcd / --data-dir defaults from this config file
  --json                 print JSON

Exit codes: 0 done, 1 the server or key store could not be reached, 2 bad usage, 3 no such key, 4 refused (a key of that name exists, or not allowed).
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

/** Where `smmf key` makes its changes: a server's KeyService, or (--bootstrap) the key store itself. */
interface KeyBackend {
  create(spec: NewKey): Promise<{ key: ApiKey; secret: string }>;
  list(): Promise<ApiKey[]>;
  revoke(which: string): Promise<ApiKey>;
  rotate(which: string): Promise<{ key: ApiKey; secret: string }>;
  close(): Promise<void>;
}

/** Through a gateway's or controller's KeyService (the admin role; --api-key or SMMF_API_KEY). */
function apiBackend(url: string | undefined): KeyBackend {
  const client = createClient(KeyService, adminTransport(url));
  return {
    async create(spec) {
      const r = await client.createApiKey({ ...spec, models: [...(spec.models ?? [])], expiresInSeconds: spec.expiresInSeconds ?? 0 });
      return { key: r.key!, secret: r.secret };
    },
    async list() {
      return (await client.listApiKeys({})).keys;
    },
    async revoke(which) {
      return (await client.revokeApiKey({ key: which })).key!;
    },
    async rotate(which) {
      const r = await client.rotateApiKey({ key: which });
      return { key: r.key!, secret: r.secret };
    },
    async close() {},
  };
}

/** Straight into the key store (--bootstrap): etcd with --etcd, else the data dir; for the first key. */
async function storeBackend(values: { config?: string; etcd?: string; "data-dir"?: string }): Promise<KeyBackend> {
  const logger = createLogger("error", "key");
  const config = loadConfig({ config: values.config, etcd: values.etcd, "data-dir": values["data-dir"] });
  const security = config.etcd ? etcdSecurityOf(config) : {};
  const client = config.etcd ? new Etcd3({ hosts: parseEndpoints(config.etcd, Boolean(security.credentials)), dialTimeout: 2_000, ...ETCD_CALL_OPTIONS, ...security }) : undefined;
  const store: KeyStore = client ? new EtcdKeyStore(client, logger) : new FileKeyStore(config.dataDir, logger, { watch: false });
  try {
    await store.ready();
  } catch (err) {
    await store.close();
    client?.close();
    throw new SmmfError("unavailable", `cannot read the API keys in etcd at ${config.etcd}: ${(err as Error).message}`);
  }
  return {
    create: (spec) => createKey(store, spec),
    list: async () => [...store.keys().values()].sort((a, b) => a.name.localeCompare(b.name)),
    revoke: (which) => revokeKey(store, which),
    rotate: (which) => rotateKey(store, which),
    async close() {
      await store.close();
      client?.close();
    },
  };
}

/** `smmf key ...`: creates, lists, revokes and rotates API keys, through a server or (--bootstrap) in the store. */
export async function runKeyCommand(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  const parsed = parseCommandArgs(`key ${action ?? ""}`.trim(), KEY_USAGE, rest, {
    role: { type: "string" },
    models: { type: "string" },
    rpm: { type: "string" },
    tpm: { type: "string" },
    expires: { type: "string" },
    bootstrap: { type: "boolean" },
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
  let backend: KeyBackend | undefined;
  try {
    backend = values.bootstrap ? await storeBackend(values) : apiBackend(values.url);
    const print = (value: unknown, text: string) => process.stdout.write(values.json ? `${JSON.stringify(value, null, 2)}\n` : text);
    switch (action) {
      case "create": {
        const name = positionals[0];
        if (!name) throw usage("smmf key create NAME: name the key");
        const role = ROLES[values.role ?? ""];
        if (!role) throw usage("--role must be inference, reader or admin");
        let expiresInSeconds = 0;
        if (values.expires !== undefined) {
          const m = /^(\d+)([mhd])$/.exec(values.expires);
          if (!m || Number(m[1]) === 0) throw usage(`--expires takes a duration like 30d, 12h or 90m; got '${values.expires}'`);
          expiresInSeconds = (Number(m[1]) * UNITS[m[2]]) / 1000;
        }
        const models = values.models ? values.models.split(",").map((s) => s.trim()).filter(Boolean) : [];
        const { key, secret } = await backend.create({ name, role, models, rpm: count("rpm", values.rpm), tpm: count("tpm", values.tpm), expiresInSeconds });
        print({ ...describe(key), secret }, `created API key '${name}' (id ${key.id}, role ${ROLE_NAMES[role]}). Its secret, shown only now:\n${secret}\n`);
        return EXIT.ok;
      }
      case "list": {
        const keys = await backend.list();
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
        const revoked = await backend.revoke(positionals[0] ?? "");
        print({ revoked: describe(revoked) }, `revoked API key '${revoked.name}' (id ${revoked.id})\n`);
        return EXIT.ok;
      }
      default: {
        const { key, secret } = await backend.rotate(positionals[0] ?? "");
        print({ ...describe(key), secret }, `rotated API key '${key.name}' (id ${key.id}); the old secret no longer works. The new one, shown only now:\n${secret}\n`);
        return EXIT.ok;
      }
    }
  } catch (err) {
    return reportError(`key ${action}`, err);
  } finally {
    await backend?.close();
  }
}
