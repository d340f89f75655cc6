import { EtcdRegistry } from "../registry/EtcdRegistry.js";
import type { CertificateFiles } from "../net/CertificateFiles.js";
import type { Registry } from "../registry/Registry.js";
import type { Logger } from "../telemetry/createLogger.js";
import type { ControllerLimits, ControllerServiceDeps } from "./createControllerService.js";
import { EtcdAuditLog } from "./EtcdAuditLog.js";
import { EtcdModelStore } from "./EtcdModelStore.js";
import { EtcdStatusStore } from "./EtcdStatusStore.js";
import { EventHub } from "./EventHub.js";
import { MemoryAuditLog } from "./MemoryAuditLog.js";
import { MemoryModelStore } from "./MemoryModelStore.js";
import { MemoryStatusStore } from "./MemoryStatusStore.js";
import { publishStateEvents } from "./publishStateEvents.js";
import { WorkerServiceClients } from "./WorkerServiceClients.js";

/** What the controller API and the control loop work on. */
export interface ControlPlane extends ControllerServiceDeps {
  close(): Promise<void>;
}

/** How a node that serves the operating API reaches workers, and the quotas it enforces. */
export interface ControlPlaneOptions {
  /** Presented to workers on every call (their cluster credential). */
  clusterSecret?: string;
  /** mTLS to workers: their CA and this process's client certificate. */
  clientTls?: CertificateFiles;
  /** Quotas of the operating API: most models, replicas per model (default DEFAULT_LIMITS). */
  limits?: Partial<ControllerLimits>;
}

/** The desired state, statuses, events and the audit record beside a registry: in etcd with an etcd registry, else in memory. */
export function createControlPlane(registry: Registry, logger: Logger, { clusterSecret, clientTls, limits }: ControlPlaneOptions = {}): ControlPlane {
  const etcd = registry instanceof EtcdRegistry ? registry.client : undefined;
  const store = etcd ? new EtcdModelStore(etcd, logger) : new MemoryModelStore();
  const statuses = etcd ? new EtcdStatusStore(etcd, logger) : new MemoryStatusStore();
  const audit = etcd ? new EtcdAuditLog(etcd, logger) : new MemoryAuditLog();
  const events = new EventHub();
  const stopEvents = publishStateEvents(events, registry, store, statuses);
  return {
    registry,
    store,
    statuses,
    events,
    clients: new WorkerServiceClients(clusterSecret, clientTls),
    audit,
    logger,
    limits,
    async close() {
      stopEvents();
      await store.close();
      await statuses.close();
      await audit.close();
    },
  };
}
