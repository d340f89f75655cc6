import { existsSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { InstanceSpecSchema } from "../gen/smmf/v1/instance_pb.js";
import { modelPath } from "../config/loadConfig.js";
import type { SmmfConfig } from "../config/SmmfConfig.js";
import { SmmfError } from "../errors/SmmfError.js";
import { startGateway, type RunningGateway } from "../gateway/startGateway.js";
import type { RouterOptions } from "../gateway/InferenceRouter.js";
import { instanceSpecOf } from "../config/instanceSpecOf.js";
import { MemoryRegistry } from "../registry/MemoryRegistry.js";
import type { Logger } from "../telemetry/createLogger.js";
import { startWorker, type RunningWorker } from "../worker/startWorker.js";

export interface Embedded {
  gateway: RunningGateway;
  worker: RunningWorker;
  registry: MemoryRegistry;
  close(graceMs?: number): Promise<void>;
}

/** Where to get the default model, for messages about a missing file. */
export function missingModelMessage(name: string, path: string): string {
  return [
    `model file not found: ${path} (model '${name}')`,
    name === "stories260K"
      ? "Get it: stories260K.gguf is a 1.1 MB TinyStories model (llama architecture); download it, e.g. from the Hugging Face repository ggml-org/models (file tinyllamas/stories260K.gguf)."
      : "Get the GGUF file of this model, or point SMMF at where it is.",
    "Then either put it at the path above, set SMMF_MODEL_DIR to the folder that holds it,",
    `set "modelDir" in smmf.config.json, or pass --model ${name}=/path/to/${name}.gguf`,
  ].join("\n");
}

/** Gateway, in-memory registry and one worker in one process, the worker serving the configured models. */
export async function startEmbedded(config: SmmfConfig, logger: Logger, routing?: Omit<RouterOptions, "logger">): Promise<Embedded> {
  for (const model of config.models) {
    const path = modelPath(config, model);
    if (!existsSync(path)) throw new SmmfError("failed_precondition", missingModelMessage(model.name, path));
  }
  const registry = new MemoryRegistry();
  const worker = await startWorker({
    host: config.workerHost,
    port: config.workerPort,
    registry,
    logger,
    streamIntervalMs: config.streamIntervalMs,
    engineDefaults: { threads: config.threads || undefined, gpu: config.gpu === "off" ? false : "auto" },
  });
  try {
    for (const model of config.models) {
      await worker.worker.load(create(InstanceSpecSchema, instanceSpecOf(config, model)));
    }
    const gateway = await startGateway({ registry, logger, host: config.host, port: config.port, maxBodyBytes: config.maxBodyBytes, routing });
    return {
      gateway,
      worker,
      registry,
      async close(graceMs = 0) {
        await gateway.close(graceMs);
        await worker.close();
        await registry.close();
      },
    };
  } catch (err) {
    await worker.close();
    throw err;
  }
}
