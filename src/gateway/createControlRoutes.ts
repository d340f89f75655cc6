import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { create, fromJson, toJson, type DescMessage, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import type { ControllerApi } from "../controller/createControllerService.js";
import {
  GetModelRequestSchema,
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
import { allowMethods } from "./allowMethods.js";
import { readJsonBody } from "./readJsonBody.js";
import { sendJson, startSse, writeSse, type AnyResponse } from "./sse.js";

type Req = IncomingMessage | Http2ServerRequest;
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
 * server-sent events. Returns false for paths it does not serve.
 */
export function createControlRoutes(service: Service, maxBodyBytes: number): (req: Req, res: AnyResponse, path: string) => Promise<boolean> {
  return async (req, res, path) => {
    const abort = new AbortController();
    const onClose = () => abort.abort();
    res.once("close", onClose);
    const ctx = { signal: abort.signal } as HandlerContext;
    const segments = path.split("/").slice(3).map(decodeURIComponent); // after /api/v1/
    try {
      const [collection, id, action] = segments;
      if (collection === "models") {
        if (id === undefined || id === "") {
          allowMethods(req, "GET", "POST");
          if (req.method === "GET") {
            const { models } = await service.listModels();
            return reply(res, 200, { object: "list", data: models.map((m) => json(ModelSchema, m)) });
          }
          const spec = parse(ModelSpecSchema, await readJsonBody(req, maxBodyBytes));
          const { model } = await service.startModel(create(StartModelRequestSchema, { spec }));
          return reply(res, 201, json(ModelRecordSchema, model!));
        }
        if (action === undefined) {
          allowMethods(req, "GET", "PUT", "DELETE");
          if (req.method === "GET") return reply(res, 200, json(ModelSchema, (await service.getModel(create(GetModelRequestSchema, { name: id }))).model!));
          if (req.method === "DELETE") {
            await service.stopModel(create(StopModelRequestSchema, { name: id }));
            return reply(res, 200, { name: id, stopped: true });
          }
          const spec = parse(ModelSpecSchema, await readJsonBody(req, maxBodyBytes));
          if (spec.name && spec.name !== id) throw new SmmfError("invalid_argument", `the spec names '${spec.name}', the path '${id}'`, { param: "name" });
          spec.name = id;
          return reply(res, 200, json(ModelRecordSchema, (await service.updateModel(create(UpdateModelRequestSchema, { spec }))).model!));
        }
        if (action === "restart") {
          allowMethods(req, "POST");
          return reply(res, 200, json(ModelRecordSchema, (await service.restartModel(create(RestartModelRequestSchema, { name: id }))).model!));
        }
        if (action === "scale") {
          allowMethods(req, "POST");
          const body = await readJsonBody(req, maxBodyBytes);
          const replicas = body.replicas;
          if (typeof replicas !== "number" || !Number.isInteger(replicas) || replicas < 0) throw new SmmfError("invalid_argument", "'replicas' must be a whole number, 0 or more", { param: "replicas" });
          return reply(res, 200, json(ModelRecordSchema, (await service.scaleModel(create(ScaleModelRequestSchema, { name: id, replicas }))).model!));
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
        const { instance } = await service.setModelInstanceState(create(SetModelInstanceStateRequestSchema, { instanceId: id, state: STATES[action] }));
        return reply(res, 200, json(InstanceSchema, instance!));
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
