import type { SmmfConfig } from "../config/SmmfConfig.js";
import { startController } from "../controller/startController.js";
import type { Logger } from "../telemetry/createLogger.js";
import { requireEtcd } from "./requireEtcd.js";
import { untilStopped } from "./untilStopped.js";

/** `smmf controller`: ControllerService over the instances registered in etcd. */
export async function runController(config: SmmfConfig, logger: Logger): Promise<number> {
  const registry = requireEtcd(config, logger, "controller");
  await registry.ready(3_000).catch(() => undefined);
  const controller = await startController({ registry, logger, host: config.host, port: config.port, id: config.controllerId || undefined, leaseTtlSeconds: config.leaseTtlSeconds, maxBodyBytes: config.maxBodyBytes });
  process.stdout.write(`SMMF controller ${controller.id} serving at ${controller.url}\n`);
  return untilStopped(logger, async () => {
    await controller.close();
    await registry.close();
  });
}
