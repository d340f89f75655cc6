import { ETCD_CALL_OPTIONS } from "./etcdCallOptions.js";
import { GatewayInfoSchema, type GatewayInfo } from "../gen/smmf/v1/gateway_pb.js";
import { toJsonString } from "@bufbuild/protobuf";
import { circuitBreaker, ConsecutiveBreaker, handleWhen } from "cockatiel";
import { Etcd3, isRecoverableError, type Lease } from "etcd3";
import { InstanceSchema, WorkerInfoSchema, type Instance, type WorkerInfo } from "../gen/smmf/v1/instance_pb.js";
import type { Logger } from "../telemetry/createLogger.js";
import { GATEWAYS_PREFIX, INSTANCES_PREFIX, instanceKey, WORKERS_PREFIX, workerKey } from "./instanceKey.js";
import { PrefixWatcher } from "./PrefixWatcher.js";
import type { Registry } from "./Registry.js";
import type { EtcdSecurity } from "./etcdSecurityOf.js";

export interface EtcdRegistryOptions {
  /** Comma-separated or listed endpoints, e.g. "http://127.0.0.1:2379". */
  endpoints: string | string[];
  /** TTL of the lease the keys of this process are bound to, in seconds. */
  leaseTtlSeconds?: number;
  logger: Logger;
  /** TLS and a user for etcd (etcdSecurityOf); endpoints without a scheme are https when TLS is set. */
  security?: EtcdSecurity;
}

const RESYNC_MIN_MS = 200;

export function parseEndpoints(endpoints: string | string[], secure = false): string[] {
  const list = (Array.isArray(endpoints) ? endpoints : endpoints.split(",")).map((e) => e.trim()).filter(Boolean);
  return list.map((e) => (/^[a-z]+:\/\//.test(e) ? e : `${secure ? "https" : "http"}://${e}`));
}

/**
 * The registry on etcd. Publishing: each instance is one key whose value is the Instance record as JSON,
 * bound to this process's lease (kept alive; a lost lease is replaced and every key put again).
 * Discovery: a snapshot of the prefix, then a watch from the next revision; after a compaction, a broken
 * watch or a reconnect, the prefix is listed again. While etcd is unreachable the last known set stays.
 */
export class EtcdRegistry implements Registry {
  /** The etcd client, shared with the controller's stores. */
  readonly client: Etcd3;
  private readonly ttl: number;
  private readonly retryMaxMs: number;
  private readonly logger: Logger;
  // publishing: key → the instance id (or worker id) and JSON value put under this process's lease
  private lease?: Lease;
  private readonly own = new Map<string, { id: string; value: string }>();
  private republishing?: Promise<void>;
  private closed = false;
  // discovery
  private readonly instances: PrefixWatcher<typeof InstanceSchema>;
  private workersWatch?: PrefixWatcher<typeof WorkerInfoSchema>;
  private gatewaysWatch?: PrefixWatcher<typeof GatewayInfoSchema>;
  /** Counts of watch events and re-lists of the instances, and of leases granted, for tests and metrics. */
  readonly stats: { leasesGranted: number; readonly events: number; readonly relists: number };

  constructor(options: EtcdRegistryOptions) {
    this.ttl = Math.max(1, Math.round(options.leaseTtlSeconds ?? 3));
    // Retry well within a lease's TTL: after an outage the keys must be back before etcd expires the old lease.
    this.retryMaxMs = Math.max(RESYNC_MIN_MS, Math.floor((this.ttl * 1000) / 3));
    this.client = new Etcd3({
      hosts: parseEndpoints(options.endpoints, Boolean(options.security?.credentials)),
      dialTimeout: 2_000,
      ...ETCD_CALL_OPTIONS,
      ...options.security,
      faultHandling: {
        host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: Math.min(1_000, this.retryMaxMs), breaker: new ConsecutiveBreaker(3) }),
      },
    });
    this.logger = options.logger;
    const instances = new PrefixWatcher({ client: this.client, prefix: INSTANCES_PREFIX, schema: InstanceSchema, logger: this.logger, what: "instance" });
    this.instances = instances;
    this.stats = {
      leasesGranted: 0,
      get events() {
        return instances.stats.events;
      },
      get relists() {
        return instances.stats.relists;
      },
    };
  }

  // ---- publishing -------------------------------------------------------------------------------

  register(instance: Instance): Promise<void> {
    return this.publish(instanceKey(instance.model, instance.instanceId), instance.instanceId, toJsonString(InstanceSchema, instance));
  }

  async unregister(instanceId: string): Promise<void> {
    for (const [key, entry] of this.own) {
      if (entry.id !== instanceId || !key.startsWith(INSTANCES_PREFIX)) continue;
      this.own.delete(key);
      await this.client.delete().key(key).exec();
    }
  }

  registerWorker(worker: WorkerInfo): Promise<void> {
    return this.publish(workerKey(worker.workerId), worker.workerId, toJsonString(WorkerInfoSchema, worker));
  }

  private async publish(key: string, id: string, value: string): Promise<void> {
    const entry = { id, value };
    this.own.set(key, entry);
    try {
      await this.put(key, entry);
    } catch (err) {
      // Keep trying in the background: the record must reach etcd once it is back.
      this.republish();
      throw err;
    }
  }

  /** Revokes this process's lease: every key it published goes at once. */
  async revoke(): Promise<void> {
    this.own.clear();
    const lease = this.lease;
    this.lease = undefined;
    if (lease) await lease.revoke().catch(() => undefined);
  }

  private getLease(): Lease {
    if (this.lease) return this.lease;
    const lease = this.client.lease(this.ttl);
    this.stats.leasesGranted++;
    lease.on("lost", (err) => {
      if (this.lease !== lease || this.closed) return;
      this.logger.warn("etcd lease lost; registering again", { error: err.message });
      this.lease = undefined;
      this.republish();
    });
    this.lease = lease;
    return lease;
  }

  private async put(key: string, entry: { id: string; value: string }): Promise<void> {
    const lease = this.getLease();
    await lease.grant();
    // Unregistered (or replaced) while the lease was being granted: putting it now would leave a ghost key.
    if (this.own.get(key) !== entry) return;
    await lease.put(key).value(entry.value);
  }

  /** Puts every own key again under a new lease, retrying until etcd takes them. */
  private republish(): void {
    if (this.republishing || this.closed) return;
    this.republishing = (async () => {
      let delay = RESYNC_MIN_MS;
      while (!this.closed && this.own.size > 0) {
        try {
          for (const [key, entry] of [...this.own]) await this.put(key, entry);
          this.logger.info("registered again in etcd", { keys: this.own.size });
          return;
        } catch (err) {
          this.logger.warn("etcd unreachable; will retry registering", { error: (err as Error).message, retryMs: delay });
          this.lease?.release();
          this.lease = undefined;
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(this.retryMaxMs, delay * 2);
        }
      }
    })().finally(() => (this.republishing = undefined));
  }

  // ---- discovery --------------------------------------------------------------------------------

  /** Whether the instances are being watched now (false while etcd is unreachable). */
  get watching(): boolean {
    return this.instances.watching;
  }

  snapshot(): readonly Instance[] {
    return this.instances.snapshot();
  }

  subscribe(listener: () => void): () => void {
    return this.instances.subscribe(listener);
  }

  /** The workers, watched once asked for. */
  workers(): readonly WorkerInfo[] {
    return this.workerWatcher().snapshot();
  }

  subscribeWorkers(listener: () => void): () => void {
    return this.workerWatcher().subscribe(listener);
  }

  /** Says this gateway is up, under this process's lease (gateways count each other for per-key limits). */
  registerGateway(info: GatewayInfo): Promise<void> {
    return this.publish(`${GATEWAYS_PREFIX}${info.gatewayId}`, info.gatewayId, toJsonString(GatewayInfoSchema, info));
  }

  /** Gateways up, as last seen (at least 1: this one). */
  gatewayCount(): number {
    this.gatewaysWatch ??= new PrefixWatcher({ client: this.client, prefix: GATEWAYS_PREFIX, schema: GatewayInfoSchema, logger: this.logger, what: "gateway" });
    return Math.max(1, this.gatewaysWatch.snapshot().length);
  }

  private workerWatcher(): PrefixWatcher<typeof WorkerInfoSchema> {
    this.workersWatch ??= new PrefixWatcher({ client: this.client, prefix: WORKERS_PREFIX, schema: WorkerInfoSchema, logger: this.logger, what: "worker" });
    return this.workersWatch;
  }

  /**
   * Resolves once the instances have been listed and are being watched (at the first try, or later once
   * etcd is back); rejects when that has not happened within `timeoutMs`. Discovery goes on trying either way.
   */
  ready(timeoutMs = 10_000): Promise<void> {
    return this.instances.ready(timeoutMs);
  }

  /** Like ready(), for the workers too. */
  async workersReady(timeoutMs = 10_000): Promise<void> {
    await this.workerWatcher().ready(timeoutMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.instances.close();
    await this.workersWatch?.close();
    await this.gatewaysWatch?.close();
    this.lease?.release();
    this.client.close();
  }
}
