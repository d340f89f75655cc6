import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ApiKeyRole, ApiKeySchema, type ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { keyIdOf, newKeyId, newSecret, sha256Hex } from "./apiKeySecret.js";
import { Authenticator, keyAllowsModel } from "./Authenticator.js";
import type { KeyStore } from "./KeyStore.js";

function storeOf(keys: ApiKey[]): KeyStore {
  const map = new Map(keys.map((k) => [k.id, k]));
  return { keys: () => map, ready: async () => undefined, subscribe: () => () => undefined, put: async () => undefined, delete: async () => false, close: async () => undefined };
}

function keyWith(role: ApiKeyRole, extra: MessageInitShape<typeof ApiKeySchema> = {}): { key: ApiKey; secret: string } {
  const id = newKeyId();
  const secret = newSecret(id);
  return { key: create(ApiKeySchema, { id, name: `n-${id}`, role, secretSha256: sha256Hex(secret), ...extra }), secret };
}

const bearer = (secret: string) => (name: string) => (name === "authorization" ? `Bearer ${secret}` : undefined);

describe("API key secrets", () => {
  it("carry their key's id and 256 random bits, and nothing else parses as one", () => {
    const id = newKeyId();
    const secret = newSecret(id);
    expect(secret).toMatch(/^smmf-k[0-9a-f]{12}-[A-Za-z0-9_-]{43}$/);
    expect(keyIdOf(secret)).toBe(id);
    expect(newSecret(id)).not.toBe(secret);
    for (const other of ["sk-abc", `smmf-${id}-short`, `${secret}x`, `x${secret}`]) expect(keyIdOf(other)).toBeUndefined();
  });
});

describe("Authenticator", () => {
  const admin = keyWith(ApiKeyRole.ADMIN);
  const app = keyWith(ApiKeyRole.INFERENCE, { models: ["a"] });
  const expired = keyWith(ApiKeyRole.ADMIN, { expiresAt: timestampFromMs(Date.now() - 1000) });
  const revoked = keyWith(ApiKeyRole.ADMIN, { revokedAt: timestampFromMs(Date.now() - 1000) });
  const auth = new Authenticator(storeOf([admin.key, app.key, expired.key, revoked.key]), "auto");

  it("finds the key of a secret sent as a bearer token, x-api-key or api-key", () => {
    expect(auth.authorize(bearer(admin.secret), ApiKeyRole.ADMIN)?.name).toBe(admin.key.name);
    expect(auth.authorize((n) => (n === "x-api-key" ? app.secret : undefined), ApiKeyRole.INFERENCE)?.id).toBe(app.key.id);
    expect(auth.authorize((n) => (n === "api-key" ? app.secret : undefined), ApiKeyRole.INFERENCE)?.id).toBe(app.key.id);
  });

  it("refuses a missing, wrong, expired or revoked key with invalid_api_key, never quoting the secret", () => {
    const wrong = `smmf-${admin.key.id}-${"B".repeat(43)}`;
    for (const [header, message] of [
      [() => undefined, /didn't provide an API key/],
      [bearer(wrong), /Incorrect API key provided/],
      [bearer("sk-elsewhere"), /Incorrect API key/],
      [(n: string) => (n === "authorization" ? "Basic abc" : undefined), /didn't provide/],
      [bearer(expired.secret), /has expired/],
      [bearer(revoked.secret), /has been revoked/],
    ] as const) {
      let err: unknown;
      try {
        auth.authorize(header, ApiKeyRole.INFERENCE);
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: "invalid_api_key", httpStatus: 401, message: expect.stringMatching(message) });
      expect(String((err as Error).message)).not.toContain("BBBB");
    }
  });

  it("refuses a role below the one needed with permission_denied, and checks the model list", () => {
    expect(() => auth.authorize(bearer(app.secret), ApiKeyRole.READER)).toThrow(expect.objectContaining({ code: "permission_denied", httpStatus: 403 }));
    expect(keyAllowsModel(app.key, "a")).toBe(true);
    expect(keyAllowsModel(app.key, "b")).toBe(false);
    expect(keyAllowsModel(admin.key, "anything")).toBe(true);
    expect(keyAllowsModel(null, "anything")).toBe(true);
  });

  it("checks nothing with no key in auto mode or with off; always with on", () => {
    expect(new Authenticator(storeOf([]), "auto").authorize(() => undefined, ApiKeyRole.ADMIN)).toBeNull();
    expect(new Authenticator(storeOf([admin.key]), "off").authorize(() => undefined, ApiKeyRole.ADMIN)).toBeNull();
    expect(() => new Authenticator(storeOf([]), "on").authorize(() => undefined, ApiKeyRole.INFERENCE)).toThrow(/didn't provide/);
  });
});
