import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  EstimateInstanceResponseSchema,
  HealthResponse_Status,
  HealthResponseSchema,
  ListInstancesResponseSchema,
  LoadInstanceResponseSchema,
  SetInstanceStateResponseSchema,
  UnloadInstanceResponseSchema,
  WorkerService,
} from "../gen/smmf/v1/worker_pb.js";
import { asConnectError } from "../errors/asConnectError.js";
import { rpc } from "../errors/rpc.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";
import { runWorkerSession } from "./runWorkerSession.js";
import type { Worker } from "./Worker.js";


/** WorkerService: the worker's instances (list, load, unload, state, estimate), its health, and controller sessions. */
export function createWorkerService(worker: Worker, logger: Logger, statusIntervalMs?: number): ServiceImpl<typeof WorkerService> {
  return {
    async listInstances() {
      return create(ListInstancesResponseSchema, { instances: worker.list() });
    },
    loadInstance: (req) =>
      rpc(async () => {
        if (!req.spec) throw new SmmfError("invalid_argument", "'spec' is required", { param: "spec" });
        return create(LoadInstanceResponseSchema, { instance: await worker.load(req.spec) });
      }),
    unloadInstance: (req) =>
      rpc(async () => {
        await worker.unload(req.instanceId, { drain: req.drain });
        return create(UnloadInstanceResponseSchema, {});
      }),
    setInstanceState: (req) => rpc(async () => create(SetInstanceStateResponseSchema, { instance: await worker.setState(req.instanceId, req.state) })),
    estimateInstance: (req) =>
      rpc(async () => {
        if (!req.spec) throw new SmmfError("invalid_argument", "'spec' is required", { param: "spec" });
        return create(EstimateInstanceResponseSchema, { memoryBytes: BigInt(await worker.estimate(req.spec)) });
      }),
    async health() {
      return create(HealthResponseSchema, {
        status: HealthResponse_Status.SERVING,
        workerId: worker.id,
        instanceCount: worker.list().length,
      });
    },
    async *session(requests) {
      try {
        yield* runWorkerSession(worker, requests, logger, statusIntervalMs);
      } catch (err) {
        throw asConnectError(err);
      }
    },
  };
}
