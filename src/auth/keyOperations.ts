import { clone, create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { SmmfError } from "../errors/SmmfError.js";
import { ApiKeyRole, ApiKeySchema, type ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { newKeyId, newSecret, sha256Hex } from "./apiKeySecret.js";
import { API_KEY_VERSION, type KeyStore } from "./KeyStore.js";

export interface NewKey {
  name: string;
  role: ApiKeyRole;
  models?: readonly string[];
  rpm?: number;
  tpm?: number;
  /** 0 or none: never expires. */
  expiresInSeconds?: number;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MODEL = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

function invalid(param: string, message: string): SmmfError {
  return new SmmfError("invalid_argument", message, { param });
}

/** The record as it may be shown: without its secret's hash. */
export function shownKey(key: ApiKey): ApiKey {
  const shown = clone(ApiKeySchema, key);
  shown.secretSha256 = "";
  return shown;
}

/** The key, not revoked, of that name or id; not_found otherwise. */
export function findKey(store: KeyStore, which: string): ApiKey {
  if (!which) throw invalid("key", "name the key (its name or id)");
  const key = [...store.keys().values()].find((k) => !k.revokedAt && (k.id === which || k.name === which));
  if (!key) throw new SmmfError("not_found", `no API key named '${which}' (that is not revoked)`, { param: "key" });
  return key;
}

/** Makes a key; returns its record and its secret (shown once, kept nowhere). */
export async function createKey(store: KeyStore, spec: NewKey, nowMs = Date.now()): Promise<{ key: ApiKey; secret: string }> {
  if (!NAME.test(spec.name)) throw invalid("name", "a key's name is 1 to 64 letters, digits, '.', '_' and '-', starting with a letter or digit");
  if (spec.role !== ApiKeyRole.INFERENCE && spec.role !== ApiKeyRole.READER && spec.role !== ApiKeyRole.ADMIN) throw invalid("role", "the role must be inference, reader or admin");
  for (const model of spec.models ?? []) if (!MODEL.test(model)) throw invalid("models", `'${model}' is not a model name`);
  if ([...store.keys().values()].some((k) => k.name === spec.name && !k.revokedAt)) throw new SmmfError("already_exists", `an API key named '${spec.name}' exists; revoke or rotate it`, { param: "name" });
  const id = newKeyId();
  const secret = newSecret(id);
  const key = create(ApiKeySchema, {
    id,
    name: spec.name,
    role: spec.role,
    models: [...(spec.models ?? [])],
    rpm: spec.rpm ?? 0,
    tpm: spec.tpm ?? 0,
    createdAt: timestampFromMs(nowMs),
    expiresAt: spec.expiresInSeconds ? timestampFromMs(nowMs + spec.expiresInSeconds * 1000) : undefined,
    secretSha256: sha256Hex(secret),
    version: API_KEY_VERSION,
  });
  await store.put(key);
  return { key, secret };
}

/** Marks a key revoked: it is refused from then on, and stays listed. */
export async function revokeKey(store: KeyStore, which: string, nowMs = Date.now()): Promise<ApiKey> {
  const revoked = clone(ApiKeySchema, findKey(store, which));
  revoked.revokedAt = timestampFromMs(nowMs);
  await store.put(revoked);
  return revoked;
}

/** A new secret for a key (same id, name and role); the old secret stops working. */
export async function rotateKey(store: KeyStore, which: string): Promise<{ key: ApiKey; secret: string }> {
  const key = clone(ApiKeySchema, findKey(store, which));
  const secret = newSecret(key.id);
  key.secretSha256 = sha256Hex(secret);
  await store.put(key);
  return { key, secret };
}
