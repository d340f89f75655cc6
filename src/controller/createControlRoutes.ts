import { ROLE_NAMES } from "../auth/Authenticator.js";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { create, fromJson, toJson, type DescMessage, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { API_KEY } from "../auth/authInterceptor.js";
import { auditAddressValues } from "./AuditAddress.js";
import { AuditRecordSchema } from "../gen/smmf/v1/audit_pb.js";
import {
  ApiKeySchema,
  CreateApiKeyRequestSchema,
  type CreateApiKeyResponseSchema,
  type KeyService,
  ListApiKeysRequestSchema,
  type ListApiKeysResponseSchema,
  RevokeApiKeyRequestSchema,
  type RevokeApiKeyResponseSchema,
  RotateApiKeyRequestSchema,
  type RotateApiKeyResponseSchema,
  type ApiKey,
} from "../gen/smmf/v1/auth_pb.js";
import type { ControllerApi } from "./createControllerService.js";
import {
  GetModelRequestSchema,
  ListAuditRequestSchema,
  ModelSchema,
  RestartModelRequestSchema,
  ScaleModelRequestSchema,
  SetModelInstanceStateRequestSchema,
  StartModelRequestSchema,
  StopModelRequestSchema,
  UpdateModelRequestSchema,
  WatchEventsRequestSchema,
  WatchEventsResponseSchema,
} from "../gen/smmf/v1/controller_pb.js";
import { InstanceSchema, InstanceState } from "../gen/smmf/v1/instance_pb.js";
import { ModelRecordSchema, ModelSpecSchema } from "../gen/smmf/v1/model_pb.js";
import { WorkerStatusSchema } from "../gen/smmf/v1/worker_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { allowMethods } from "../net/allowMethods.js";
import { readJsonBody } from "../net/readJsonBody.js";
import { decodeSegment } from "../net/decodeSegment.js";
import { sendJson, startSse, writeSse, type AnyResponse } from "../net/sse.js";

type Req = IncomingMessage | Http2ServerRequest;
import type { Registry } from "../registry/Registry.js";
type Service = ControllerApi;

const STATES: Record<string, InstanceState> = { online: InstanceState.ONLINE, offline: InstanceState.OFFLINE, drain: InstanceState.DRAINING };

function json<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): JsonValue {
  return toJson(schema, message, { alwaysEmitImplicit: false });
}

function parse<Desc extends DescMessage>(schema: Desc, body: unknown): MessageShape<Desc> {
  try {
    return fromJson(schema, body as JsonValue);
  } catch (err) {
    throw new SmmfError("invalid_argument", `invalid ${schema.name}: ${(err as Error).message}`);
  }
}

function reply(res: AnyResponse, status: number, body: unknown): true {
  sendJson(res, status, body);
  return true;
}

/**
 * The controller API as REST under /api/v1 (JSON bodies are the protobuf messages in proto3 JSON form):
 * models (list, start, get, update, stop, restart, scale), workers, instance states, and events as
 * server-sent events, the audit record, and whether the server reaches etcd (`/api/v1/status`). Returns false for paths it does not serve. `key` is the caller's
 * API key as the REST handler authorized it (null when keys are not enforced): changes are recorded with its
 * name, as over gRPC.
 */
export function createControlRoutes(service: Service, maxBodyBytes: number, keys?: ServiceImpl<typeof KeyService>, registry?: Registry): (req: Req, res: AnyResponse, path: string, key?: ApiKey | null) => Promise<boolean> {
  return async (req, res, path, key = null) => {
    const abort = new AbortController();
    const onClose = () => abort.abort();
    res.once("close", onClose);
    const values = auditAddressValues(req).set(API_KEY, key);
    const ctx = { signal: abort.signal, values } as HandlerContext;
    const segments = path.split("/").slice(3).map(decodeSegment); // after /api/v1/
    try {
      const [collection, id, action] = segments;
      // Who the caller is: its key's name and role (for the console); without keys in use, an open admin.
      if (collection === "whoami" && id === undefined) {
        allowMethods(req, "GET");
        return reply(res, 200, key ? { name: key.name, role: ROLE_NAMES[key.role], models: key.models } : { name: null, role: "admin", models: [] });
      }
      // Whether this server reaches etcd now ("none": it keeps its registry in memory, as `smmf serve` does). While
      // it does not, what it lists is as last seen, and changes fail.
      if (collection === "status" && id === undefined) {
        allowMethods(req, "GET");
        const watching = registry?.watching;
        return reply(res, 200, { etcd: watching === undefined ? "none" : watching ? "connected" : "unreachable" });
      }
      if (collection === "models") {
        if (id === undefined || id === "") {
          allowMethods(req, "GET", "POST");
          if (req.method === "GET") {
            const { models } = await service.listModels();
            return reply(res, 200, { object: "list", data: models.map((m) => json(ModelSchema, m)) });
          }
          const spec = parse(ModelSpecSchema, await readJsonBody(req, maxBodyBytes));
          const { model } = await service.startModel(create(StartModelRequestSchema, { spec }), ctx);
          return reply(res, 201, json(ModelRecordSchema, model!));
        }
        if (action === undefined) {
          allowMethods(req, "GET", "PUT", "DELETE");
          if (req.method === "GET") return reply(res, 200, json(ModelSchema, (await service.getModel(create(GetModelRequestSchema, { name: id }))).model!));
          if (req.method === "DELETE") {
            await service.stopModel(create(StopModelRequestSchema, { name: id }), ctx);
            return reply(res, 200, { name: id, stopped: true });
          }
          const spec = parse(ModelSpecSchema, await readJsonBody(req, maxBodyBytes));
          if (spec.name && spec.name !== id) throw new SmmfError("invalid_argument", `the spec names '${spec.name}', the path '${id}'`, { param: "name" });
          spec.name = id;
          return reply(res, 200, json(ModelRecordSchema, (await service.updateModel(create(UpdateModelRequestSchema, { spec }), ctx)).model!));
        }
        if (action === "restart") {
          allowMethods(req, "POST");
          return reply(res, 200, json(ModelRecordSchema, (await service.restartModel(create(RestartModelRequestSchema, { name: id }), ctx)).model!));
        }
        if (action === "scale") {
          allowMethods(req, "POST");
          const body = await readJsonBody(req, maxBodyBytes);
          const replicas = body.replicas;
          if (typeof replicas !== "number" || !Number.isInteger(replicas) || replicas < 0) throw new SmmfError("invalid_argument", "'replicas' must be a whole number, 0 or more", { param: "replicas" });
          return reply(res, 200, json(ModelRecordSchema, (await service.scaleModel(create(ScaleModelRequestSchema, { name: id, replicas }), ctx)).model!));
        }
        return false;
      }
      if (collection === "workers" && id === undefined) {
        allowMethods(req, "GET");
        const { workers } = await service.listWorkers();
        return reply(res, 200, { object: "list", data: workers.map((w) => json(WorkerStatusSchema, w)) });
      }
      if (collection === "instances" && id && action !== undefined && Object.hasOwn(STATES, action)) {
        allowMethods(req, "POST");
        const { instance } = await service.setModelInstanceState(create(SetModelInstanceStateRequestSchema, { instanceId: id, state: STATES[action] }), ctx);
        return reply(res, 200, json(InstanceSchema, instance!));
      }
      if (collection === "audit" && id === undefined) {
        allowMethods(req, "GET");
        const query = new URL(req.url ?? "/", "http://x").searchParams;
        const limitText = query.get("limit") ?? "";
        if (limitText && !/^\d{1,6}$/.test(limitText)) throw new SmmfError("invalid_argument", "'limit' must be a whole number", { param: "limit" });
        const request = create(ListAuditRequestSchema, { limit: Number(limitText), before: query.get("before") ?? "", action: query.get("action") ?? "", target: query.get("target") ?? "" });
        const { records, next } = await service.listAudit(request);
        return reply(res, 200, { object: "list", data: records.map((r) => toJson(AuditRecordSchema, r, { alwaysEmitImplicit: true })), next: next || null });
      }
      if (collection === "keys" && keys && (id === undefined || action === "revoke" || action === "rotate")) {
        // The secret is in the answer of a create or a rotate, once; records carry no hash.
        const shown = (k: ApiKey | undefined) => (k ? toJson(ApiKeySchema, k, { alwaysEmitImplicit: false }) : null);
        if (id === undefined) {
          allowMethods(req, "GET", "POST");
          if (req.method === "GET") {
            const listed = (await keys.listApiKeys!(create(ListApiKeysRequestSchema), ctx)) as MessageShape<typeof ListApiKeysResponseSchema>;
            return reply(res, 200, { object: "list", data: listed.keys.map(shown) });
          }
          const request = parse(CreateApiKeyRequestSchema, await readJsonBody(req, maxBodyBytes));
          const created = (await keys.createApiKey!(request, ctx)) as MessageShape<typeof CreateApiKeyResponseSchema>;
          return reply(res, 201, { key: shown(created.key), secret: created.secret });
        }
        allowMethods(req, "POST");
        if (action === "revoke") {
          const revoked = (await keys.revokeApiKey!(create(RevokeApiKeyRequestSchema, { key: id }), ctx)) as MessageShape<typeof RevokeApiKeyResponseSchema>;
          return reply(res, 200, { key: shown(revoked.key) });
        }
        const rotated = (await keys.rotateApiKey!(create(RotateApiKeyRequestSchema, { key: id }), ctx)) as MessageShape<typeof RotateApiKeyResponseSchema>;
        return reply(res, 200, { key: shown(rotated.key), secret: rotated.secret });
      }
      if (collection === "events" && id === undefined) {
        allowMethods(req, "GET");
        const model = new URL(req.url ?? "/", "http://x").searchParams.get("model") ?? "";
        startSse(res, {});
        for await (const event of service.watchEvents(create(WatchEventsRequestSchema, { model }), ctx)) {
          await writeSse(res, json(WatchEventsResponseSchema, event));
        }
        return true;
      }
      return false;
    } finally {
      res.off("close", onClose);
    }
  };
}
