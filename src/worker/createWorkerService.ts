import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  HealthResponse_Status,
  HealthResponseSchema,
  ListInstancesResponseSchema,
  LoadInstanceResponseSchema,
  UnloadInstanceResponseSchema,
  WorkerService,
} from "../gen/smmf/v1/worker_pb.js";
import { asConnectError } from "../errors/asConnectError.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { Worker } from "./Worker.js";

/** WorkerService: list, load and unload the worker's instances, and its health. */
export function createWorkerService(worker: Worker): ServiceImpl<typeof WorkerService> {
  return {
    async listInstances() {
      return create(ListInstancesResponseSchema, { instances: worker.list() });
    },
    async loadInstance(req) {
      try {
        if (!req.spec) throw new SmmfError("invalid_argument", "'spec' is required", { param: "spec" });
        return create(LoadInstanceResponseSchema, { instance: await worker.load(req.spec) });
      } catch (err) {
        throw asConnectError(err);
      }
    },
    async unloadInstance(req) {
      try {
        await worker.unload(req.instanceId);
        return create(UnloadInstanceResponseSchema, {});
      } catch (err) {
        throw asConnectError(err);
      }
    },
    async health() {
      return create(HealthResponseSchema, {
        status: HealthResponse_Status.SERVING,
        workerId: worker.id,
        instanceCount: worker.list().length,
      });
    },
  };
}
