import type { SmmfConfig } from "../config/SmmfConfig.js";
import { clientTlsOf, listenerSettingsOf } from "../net/listenerSettingsOf.js";
import { startGateway } from "../gateway/startGateway.js";
import type { Logger } from "../telemetry/createLogger.js";
import { requireEtcd } from "./requireEtcd.js";
import { routingOptions } from "../gateway/routingOptions.js";
import { untilStopped } from "./untilStopped.js";
import { createTelemetry } from "../telemetry/createTelemetry.js";
import { closeTelemetry } from "../telemetry/Telemetry.js";
import { EtcdKeyStore } from "../auth/EtcdKeyStore.js";
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { GatewayInfoSchema } from "../gen/smmf/v1/gateway_pb.js";
import { startAuth } from "../auth/startAuth.js";
import { readClusterSecret } from "../auth/clusterCredential.js";

/** `smmf gateway`: the REST and gRPC front door, discovering instances in etcd. */
export async function runGateway(config: SmmfConfig, logger: Logger): Promise<number> {
  const registry = requireEtcd(config, logger, "gateway");
  // Start serving even when etcd is not reachable yet: discovery keeps trying in the background.
  await registry.ready(3_000).catch(() => undefined);
  const keys = new EtcdKeyStore(registry.client, logger);
  const auth = await startAuth(config.auth, config.host, keys, logger, `--etcd ${config.etcd}`);
  const telemetry = await createTelemetry(config, "smmf-gateway", logger, { requestLog: true });
  const gateway = await startGateway({ registry, logger, host: config.host, port: config.port, maxBodyBytes: config.maxBodyBytes, routing: routingOptions(config), telemetry, auth, clusterSecret: readClusterSecret(config.clusterSecretFile), fleetSize: () => registry.gatewayCount(), corsOrigins: config.corsOrigins, listener: listenerSettingsOf(config, "gateway", logger), clientTls: clientTlsOf(config, logger), limits: config, requestCaps: { maxMessages: config.maxMessages, maxPromptChars: config.maxPromptChars, maxStopChars: config.maxStopChars } });
  // Gateways count each other in etcd: each enforces its share of every API key's limits.
  await registry.registerGateway(create(GatewayInfoSchema, { gatewayId: `gateway-${randomUUID().slice(0, 8)}`, address: gateway.url, startedAt: timestampNow(), version: 1 })).catch((err: unknown) => logger.warn("could not register the gateway in etcd yet; retrying", { error: (err as Error).message }));
  process.stdout.write(`SMMF gateway serving at ${gateway.url}/v1\n`);
  return untilStopped(logger, async () => {
    await gateway.close(config.shutdownGraceMs);
    await keys.close();
    await registry.close();
    await closeTelemetry(telemetry);
  });
}
