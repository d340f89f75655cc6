import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ApiKeyRole, type ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { keyIdOf, secretMatches } from "./apiKeySecret.js";
import type { KeyStore } from "./KeyStore.js";

/** `on`: every request needs a key; `auto`: once any key exists; `off`: never (an explicit opt-out). */
export type AuthMode = "auto" | "on" | "off";

export const ROLE_NAMES: Record<ApiKeyRole, string> = {
  [ApiKeyRole.UNSPECIFIED]: "none",
  [ApiKeyRole.INFERENCE]: "inference",
  [ApiKeyRole.READER]: "reader",
  [ApiKeyRole.ADMIN]: "admin",
};

/** Reads one request header by its lower-case name. */
export type HeaderGetter = (name: string) => string | undefined;

const MISSING = "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or an 'x-api-key' / 'api-key' header).";
const INCORRECT = "Incorrect API key provided.";

/**
 * Checks API keys against the records of a key store (in memory, kept current by the store's watch): the
 * secret's id part finds the record, its SHA-256 must match, it must not have expired, and its role must be at
 * least the one the call needs. Answers `invalid_api_key` (401) or `permission_denied` (403); the secret is in
 * no message.
 */
export class Authenticator {
  constructor(
    readonly store: KeyStore,
    readonly mode: AuthMode,
  ) {}

  /** Whether requests need a key now: once any key has existed (revoked ones count), with `auto`. */
  get enforced(): boolean {
    return this.mode === "on" || (this.mode === "auto" && this.store.keys().size > 0);
  }

  /** The key a request carries, allowed `role`; null when keys are not enforced. */
  authorize(header: HeaderGetter, role: ApiKeyRole): ApiKey | null {
    if (!this.enforced) return null;
    const secret = secretOf(header);
    if (!secret) throw new SmmfError("invalid_api_key", MISSING);
    const id = keyIdOf(secret);
    const key = id === undefined ? undefined : this.store.keys().get(id);
    if (!key || !secretMatches(secret, key.secretSha256)) throw new SmmfError("invalid_api_key", INCORRECT);
    if (key.revokedAt) throw new SmmfError("invalid_api_key", `The API key '${key.name}' has been revoked.`);
    if (key.expiresAt && timestampMs(key.expiresAt) <= Date.now()) throw new SmmfError("invalid_api_key", `The API key '${key.name}' has expired.`);
    if (key.role < role) throw new SmmfError("permission_denied", `The API key '${key.name}' (role ${ROLE_NAMES[key.role]}) may not do this: it needs role ${ROLE_NAMES[role]}.`);
    return key;
  }
}

/** Whether `key` may use `model` (no key: keys are not enforced). */
export function keyAllowsModel(key: ApiKey | null, model: string): boolean {
  return !key || key.models.length === 0 || key.models.includes(model);
}

function secretOf(header: HeaderGetter): string | undefined {
  const authorization = header("authorization");
  if (authorization) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return m ? m[1] : undefined;
  }
  return header("x-api-key") || header("api-key") || undefined;
}
