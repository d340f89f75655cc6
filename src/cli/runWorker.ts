import { create } from "@bufbuild/protobuf";
import { assertModelFiles } from "../config/assertModelFiles.js";
import type { SmmfConfig } from "../config/SmmfConfig.js";
import { InstanceSpecSchema } from "../gen/smmf/v1/instance_pb.js";
import type { Logger } from "../telemetry/createLogger.js";
import { startWorker } from "../worker/startWorker.js";
import { workerSettingsOf } from "../worker/workerSettingsOf.js";
import { instanceSpecOf } from "../config/instanceSpecOf.js";
import { requireEtcd } from "./requireEtcd.js";
import { untilStopped } from "./untilStopped.js";
import { createTelemetry } from "../telemetry/createTelemetry.js";
import { closeTelemetry } from "../telemetry/Telemetry.js";

/** `smmf worker`: hosts the configured models and registers them in etcd; SIGTERM drains it. */
export async function runWorker(config: SmmfConfig, logger: Logger): Promise<number> {
  assertModelFiles(config);
  const registry = requireEtcd(config, logger, "worker");
  const telemetry = await createTelemetry(config, "smmf-worker", logger);
  const running = await startWorker({
    ...workerSettingsOf(config),
    telemetry,
    id: config.workerId || undefined,
    advertiseAddress: config.advertiseAddress || undefined,
    registry,
    logger,
  });
  try {
    for (const model of config.models) await running.worker.load(create(InstanceSpecSchema, instanceSpecOf(config, model)));
  } catch (err) {
    await running.close();
    await registry.revoke();
    await registry.close();
    throw err;
  }
  const hosting = config.models.length > 0 ? config.models.map((m) => m.name).join(", ") : "no configured models (the controller places instances)";
  process.stdout.write(`SMMF worker ${running.worker.id} serving ${hosting} at ${running.address}\n`);
  return untilStopped(logger, async () => {
    await running.drain(config.shutdownGraceMs);
    await registry.revoke();
    await registry.close();
    await closeTelemetry(telemetry);
  });
}
