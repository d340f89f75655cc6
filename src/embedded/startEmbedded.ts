import { create } from "@bufbuild/protobuf";
import { listenerLimitsOf, listenerSettingsOf } from "../net/listenerSettingsOf.js";
import { InstanceSpecSchema } from "../gen/smmf/v1/instance_pb.js";
import { assertModelFiles } from "../config/assertModelFiles.js";
import type { SmmfConfig } from "../config/SmmfConfig.js";
import { startGateway, type RunningGateway } from "../gateway/startGateway.js";
import type { RouterOptions } from "../gateway/InferenceRouter.js";
import { instanceSpecOf } from "../config/instanceSpecOf.js";
import { MemoryRegistry } from "../registry/MemoryRegistry.js";
import type { Logger } from "../telemetry/createLogger.js";
import { createControlPlane } from "../controller/createControlPlane.js";
import { startReconciling } from "../controller/startReconciling.js";
import { routingOptions } from "../gateway/routingOptions.js";
import { createTelemetry } from "../telemetry/createTelemetry.js";
import { closeTelemetry, type Telemetry } from "../telemetry/Telemetry.js";
import { startWorker, type RunningWorker } from "../worker/startWorker.js";
import { workerSettingsOf } from "../worker/workerSettingsOf.js";
import { FileKeyStore } from "../auth/FileKeyStore.js";
import { startAuth } from "../auth/startAuth.js";
import { readClusterSecret } from "../auth/clusterCredential.js";
import { randomBytes } from "node:crypto";

export interface Embedded {
  gateway: RunningGateway;
  worker: RunningWorker;
  registry: MemoryRegistry;
  telemetry: Telemetry;
  close(graceMs?: number): Promise<void>;
}

export interface EmbeddedOptions {
  routing?: Omit<RouterOptions, "logger">;
  /** Default: from the settings (metrics; traces with an OTLP endpoint; the request log). */
  telemetry?: Telemetry;
}

/** Gateway, in-memory registry and one worker in one process, the worker serving the configured models. */
export async function startEmbedded(config: SmmfConfig, logger: Logger, options: EmbeddedOptions = {}): Promise<Embedded> {
  const routing = options.routing ?? routingOptions(config);
  assertModelFiles(config);
  const registry = new MemoryRegistry();
  const telemetry = options.telemetry ?? (await createTelemetry(config, "smmf", logger, { requestLog: true }));
  const keys = new FileKeyStore(config.dataDir, logger);
  let auth;
  try {
    auth = await startAuth(config.auth, config.host, keys, logger, `--data-dir ${config.dataDir}`);
  } catch (err) {
    await keys.close();
    if (!options.telemetry) await closeTelemetry(telemetry);
    throw err;
  }
  // The worker answers only this process's gateway and controller: its port is closed to anyone else.
  const clusterSecret = readClusterSecret(config.clusterSecretFile) ?? randomBytes(32).toString("base64url");
  const worker = await startWorker({ ...workerSettingsOf(config), telemetry, registry, logger, clusterSecret, listener: { limits: listenerLimitsOf(config) } });
  try {
    for (const model of config.models) {
      await worker.worker.load(create(InstanceSpecSchema, instanceSpecOf(config, model)));
    }
    // The controller's desired state lives in memory here; its control loop leads alone (one term, no election).
    const controlPlane = createControlPlane(registry, logger, { clusterSecret, limits: config });
    const leading = new AbortController();
    startReconciling(controlPlane, "embedded", 1n, leading.signal, logger, telemetry.metrics);
    // The gateway calls its own worker in process (no gRPC between them); workers elsewhere, over gRPC.
    const localWorkers = new Map([[worker.address, worker.inference]]);
    const gateway = await startGateway({ registry, logger, host: config.host, port: config.port, maxBodyBytes: config.maxBodyBytes, routing: { ...routing, localWorkers }, controlPlane, telemetry, auth, clusterSecret, corsOrigins: config.corsOrigins, listener: listenerSettingsOf(config, "gateway", logger), requestCaps: { maxMessages: config.maxMessages, maxPromptChars: config.maxPromptChars, maxStopChars: config.maxStopChars } }).catch(async (err: unknown) => {
      leading.abort();
      await controlPlane.close();
      throw err;
    });
    return {
      gateway,
      worker,
      registry,
      telemetry,
      async close(graceMs = 0) {
        await gateway.close(graceMs);
        leading.abort();
        await controlPlane.close();
        await worker.close();
        await registry.close();
        await keys.close();
        await closeTelemetry(telemetry);
      },
    };
  } catch (err) {
    await worker.close();
    await keys.close();
    await closeTelemetry(telemetry);
    throw err;
  }
}
