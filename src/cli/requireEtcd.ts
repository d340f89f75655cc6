import type { SmmfConfig } from "../config/SmmfConfig.js";
import { SmmfError } from "../errors/SmmfError.js";
import { EtcdRegistry } from "../registry/EtcdRegistry.js";
import { etcdSecurityOf } from "../registry/etcdSecurityOf.js";
import type { Logger } from "../telemetry/createLogger.js";

/** The etcd registry of a distributed-mode process; --etcd (or SMMF_ETCD) is required. */
export function requireEtcd(config: SmmfConfig, logger: Logger, command: string): EtcdRegistry {
  if (!config.etcd) throw new SmmfError("invalid_argument", `smmf ${command} needs --etcd ENDPOINTS (or SMMF_ETCD), e.g. --etcd http://127.0.0.1:2379`);
  return new EtcdRegistry({ endpoints: config.etcd, leaseTtlSeconds: config.leaseTtlSeconds, logger, security: etcdSecurityOf(config) });
}
