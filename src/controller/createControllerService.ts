import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { ControllerService, ListModelInstancesResponseSchema, ListModelsResponseSchema } from "../gen/smmf/v1/controller_pb.js";
import type { Registry } from "../registry/Registry.js";
import { listModels } from "./listModels.js";

/** ControllerService over the registry: the models and instances that are running. */
export function createControllerService(registry: Registry): ServiceImpl<typeof ControllerService> {
  return {
    async listModels() {
      return create(ListModelsResponseSchema, {
        models: listModels(registry.snapshot()).map((m) => ({ name: m.name, engines: m.engines, readyReplicas: m.readyReplicas, created: BigInt(m.created) })),
      });
    },
    async listModelInstances(req) {
      const instances = registry.snapshot().filter((i) => !req.model || i.model === req.model);
      return create(ListModelInstancesResponseSchema, { instances });
    },
  };
}
