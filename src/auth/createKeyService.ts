import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { asConnectError } from "../errors/asConnectError.js";
import {
  CreateApiKeyRequestSchema,
  CreateApiKeyResponseSchema,
  KeyService,
  ListApiKeysResponseSchema,
  RevokeApiKeyRequestSchema,
  RevokeApiKeyResponseSchema,
  RotateApiKeyRequestSchema,
  RotateApiKeyResponseSchema,
} from "../gen/smmf/v1/auth_pb.js";
import type { AuditLog } from "../controller/AuditLog.js";
import { createAuditRecorder } from "../controller/createAuditRecorder.js";
import type { Logger } from "../telemetry/createLogger.js";
import { createKey, revokeKey, rotateKey, shownKey } from "./keyOperations.js";
import type { KeyStore } from "./KeyStore.js";

/**
 * KeyService as gateways and controllers serve it (the admin role): keys made, listed, revoked and rotated in
 * the store every gateway watches. Each change goes into the audit record (never a secret: the requests hold
 * names, roles and limits).
 */
export function createKeyService(store: KeyStore, audit: AuditLog, logger: Logger): ServiceImpl<typeof KeyService> {
  const audited = createAuditRecorder(audit, logger);
  const run = async <T>(body: () => Promise<T>): Promise<T> => {
    try {
      return await body();
    } catch (err) {
      throw asConnectError(err);
    }
  };
  return {
    createApiKey: (req, ctx) =>
      run(() =>
        audited(ctx, { action: "CreateApiKey", target: req.name, schema: CreateApiKeyRequestSchema, request: req }, async () => {
          const { key, secret } = await createKey(store, { name: req.name, role: req.role, models: req.models, rpm: req.rpm, tpm: req.tpm, expiresInSeconds: req.expiresInSeconds });
          return create(CreateApiKeyResponseSchema, { key: shownKey(key), secret });
        }),
      ),
    listApiKeys: async () => create(ListApiKeysResponseSchema, { keys: [...store.keys().values()].sort((a, b) => a.name.localeCompare(b.name)).map(shownKey) }),
    revokeApiKey: (req, ctx) =>
      run(() =>
        audited(ctx, { action: "RevokeApiKey", target: req.key, schema: RevokeApiKeyRequestSchema, request: req }, async () => create(RevokeApiKeyResponseSchema, { key: shownKey(await revokeKey(store, req.key)) })),
      ),
    rotateApiKey: (req, ctx) =>
      run(() =>
        audited(ctx, { action: "RotateApiKey", target: req.key, schema: RotateApiKeyRequestSchema, request: req }, async () => {
          const { key, secret } = await rotateKey(store, req.key);
          return create(RotateApiKeyResponseSchema, { key: shownKey(key), secret });
        }),
      ),
  };
}
