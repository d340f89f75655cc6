import type { SmmfConfig } from "../config/SmmfConfig.js";
import { clientTlsOf, listenerSettingsOf } from "../net/listenerSettingsOf.js";
import { startController } from "../controller/startController.js";
import type { Logger } from "../telemetry/createLogger.js";
import { requireEtcd } from "./requireEtcd.js";
import { untilStopped } from "./untilStopped.js";
import { EtcdKeyStore } from "../auth/EtcdKeyStore.js";
import { startAuth } from "../auth/startAuth.js";
import { readClusterSecret } from "../auth/clusterCredential.js";

/** `smmf controller`: ControllerService over the instances registered in etcd. */
export async function runController(config: SmmfConfig, logger: Logger): Promise<number> {
  const registry = requireEtcd(config, logger, "controller");
  await registry.ready(3_000).catch(() => undefined);
  const keys = new EtcdKeyStore(registry.client, logger);
  const auth = await startAuth(config.auth, config.host, keys, logger, `--etcd ${config.etcd}`);
  const controller = await startController({ registry, logger, host: config.host, port: config.port, id: config.controllerId || undefined, leaseTtlSeconds: config.leaseTtlSeconds, maxBodyBytes: config.maxBodyBytes, auth, clusterSecret: readClusterSecret(config.clusterSecretFile), listener: listenerSettingsOf(config, "controller", logger), clientTls: clientTlsOf(config, logger), limits: config });
  process.stdout.write(`SMMF controller ${controller.id} serving at ${controller.url}\n`);
  return untilStopped(logger, async () => {
    await controller.close();
    await keys.close();
    await registry.close();
  });
}
