import { create } from "@bufbuild/protobuf";
import { listenerSettingsOf } from "../net/listenerSettingsOf.js";
import { assertModelFiles } from "../config/assertModelFiles.js";
import type { SmmfConfig } from "../config/SmmfConfig.js";
import { InstanceSpecSchema } from "../gen/smmf/v1/instance_pb.js";
import type { Logger } from "../telemetry/createLogger.js";
import { startWorker } from "../worker/startWorker.js";
import { workerSettingsOf } from "../worker/workerSettingsOf.js";
import { instanceSpecOf } from "../config/instanceSpecOf.js";
import { requireEtcd } from "./requireEtcd.js";
import { untilStopped } from "./untilStopped.js";
import { readClusterSecret } from "../auth/clusterCredential.js";
import { SmmfError } from "../errors/SmmfError.js";
import { isLoopbackHost } from "../net/loopbackHost.js";
import { createTelemetry } from "../telemetry/createTelemetry.js";
import { closeTelemetry } from "../telemetry/Telemetry.js";

/** `smmf worker`: hosts the configured models and registers them in etcd; SIGTERM drains it. */
export async function runWorker(config: SmmfConfig, logger: Logger): Promise<number> {
  assertModelFiles(config);
  const clusterSecret = readClusterSecret(config.clusterSecretFile);
  const listener = listenerSettingsOf(config, "worker", logger);
  if (!clusterSecret && !listener.tls?.requireClientCertificate && !isLoopbackHost(config.workerHost)) {
    throw new SmmfError(
      "failed_precondition",
      `refusing to listen on ${config.workerHost} without a cluster credential: anyone who reaches the port could generate, load and unload models. Give every SMMF process the same secret (16 characters or more) in SMMF_CLUSTER_SECRET or a file named by --cluster-secret-file, or require mTLS (--tls-cert, --tls-key and --tls-ca).`,
    );
  }
  const registry = requireEtcd(config, logger, "worker");
  const telemetry = await createTelemetry(config, "smmf-worker", logger);
  const running = await startWorker({
    ...workerSettingsOf(config),
    telemetry,
    id: config.workerId || undefined,
    advertiseAddress: config.advertiseAddress || undefined,
    registry,
    logger,
    clusterSecret,
    listener,
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
