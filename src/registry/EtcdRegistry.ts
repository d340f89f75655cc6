import { fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { circuitBreaker, ConsecutiveBreaker, handleWhen } from "cockatiel";
import { Etcd3, isRecoverableError, type Lease, type Watcher } from "etcd3";
import { InstanceSchema, type Instance } from "../gen/smmf/v1/instance_pb.js";
import type { Logger } from "../telemetry/createLogger.js";
import { INSTANCES_PREFIX, instanceKey } from "./instanceKey.js";
import type { Registry } from "./Registry.js";

export interface EtcdRegistryOptions {
  /** Comma-separated or listed endpoints, e.g. "http://127.0.0.1:2379". */
  endpoints: string | string[];
  /** TTL of the lease the keys of this process are bound to, in seconds. */
  leaseTtlSeconds?: number;
  logger: Logger;
}

const RESYNC_MIN_MS = 200;
/** A watch that is not set up by then (etcd went away after the listing) is given up and the prefix listed again. */
const WATCH_CREATE_TIMEOUT_MS = 5_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`no answer from etcd within ${ms} ms`));
      promise.then((late) => (late as { cancel?: () => Promise<void> } | undefined)?.cancel?.().catch(() => undefined), () => undefined);
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
const RESYNC_MAX_MS = 5_000;

function parseEndpoints(endpoints: string | string[]): string[] {
  const list = (Array.isArray(endpoints) ? endpoints : endpoints.split(",")).map((e) => e.trim()).filter(Boolean);
  return list.map((e) => (/^[a-z]+:\/\//.test(e) ? e : `http://${e}`));
}

/**
 * The registry on etcd. Publishing: each instance is one key whose value is the Instance record as JSON,
 * bound to this process's lease (kept alive; a lost lease is replaced and every key put again).
 * Discovery: a snapshot of the prefix, then a watch from the next revision; after a compaction, a broken
 * watch or a reconnect, the prefix is listed again. While etcd is unreachable the last known set stays.
 */
export class EtcdRegistry implements Registry {
  private readonly client: Etcd3;
  private readonly ttl: number;
  private readonly retryMaxMs: number;
  private readonly logger: Logger;
  // publishing
  private lease?: Lease;
  private readonly own = new Map<string, Instance>();
  private republishing?: Promise<void>;
  // discovery
  private readonly known = new Map<string, Instance>();
  private list: readonly Instance[] = [];
  private readonly listeners = new Set<() => void>();
  private watcher?: Watcher;
  private watching = false;
  private resyncTimer?: NodeJS.Timeout;
  private resyncDelay = RESYNC_MIN_MS;
  private closed = false;
  private readyPromise?: Promise<void>;
  private markReady: () => void = () => undefined;
  /** Counts of watch events and re-lists, for tests and metrics. */
  readonly stats = { events: 0, relists: 0, leasesGranted: 0 };

  constructor(options: EtcdRegistryOptions) {
    this.ttl = Math.max(1, Math.round(options.leaseTtlSeconds ?? 3));
    // Retry well within a lease's TTL: after an outage the keys must be back before etcd expires the old lease.
    this.retryMaxMs = Math.max(RESYNC_MIN_MS, Math.floor((this.ttl * 1000) / 3));
    this.client = new Etcd3({
      hosts: parseEndpoints(options.endpoints),
      dialTimeout: 2_000,
      faultHandling: {
        host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: Math.min(1_000, this.retryMaxMs), breaker: new ConsecutiveBreaker(3) }),
      },
    });
    this.logger = options.logger;
  }

  // ---- publishing -------------------------------------------------------------------------------

  async register(instance: Instance): Promise<void> {
    this.own.set(instance.instanceId, instance);
    try {
      await this.put(instance);
    } catch (err) {
      // Keep trying in the background: the record must reach etcd once it is back.
      this.republish();
      throw err;
    }
  }

  async unregister(instanceId: string): Promise<void> {
    const instance = this.own.get(instanceId);
    if (!instance) return;
    this.own.delete(instanceId);
    await this.client.delete().key(instanceKey(instance.model, instanceId)).exec();
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

  private async put(instance: Instance): Promise<void> {
    const lease = this.getLease();
    await lease.grant();
    // Unregistered (or replaced) while the lease was being granted: putting it now would leave a ghost key.
    if (this.own.get(instance.instanceId) !== instance) return;
    await lease.put(instanceKey(instance.model, instance.instanceId)).value(toJsonString(InstanceSchema, instance));
  }

  /** Puts every own key again under a new lease, retrying until etcd takes them. */
  private republish(): void {
    if (this.republishing || this.closed) return;
    this.republishing = (async () => {
      let delay = RESYNC_MIN_MS;
      while (!this.closed && this.own.size > 0) {
        try {
          for (const instance of [...this.own.values()]) await this.put(instance);
          this.logger.info("registered again in etcd", { instances: this.own.size });
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

  snapshot(): readonly Instance[] {
    this.startWatching();
    return this.list;
  }

  subscribe(listener: () => void): () => void {
    this.startWatching();
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves once the prefix has been listed and is being watched (at the first try, or later once etcd is
   * back); rejects when that has not happened within `timeoutMs`. Discovery goes on trying either way.
   */
  ready(timeoutMs = 10_000): Promise<void> {
    this.startWatching();
    return withTimeout(this.readyPromise!, timeoutMs);
  }

  private startWatching(): void {
    if (this.watching) return;
    this.watching = true;
    this.readyPromise = new Promise<void>((resolve) => (this.markReady = resolve));
    this.resync().catch(() => undefined);
  }

  private async resync(): Promise<void> {
    if (this.closed) return;
    void this.watcher?.cancel().catch(() => undefined);
    this.watcher = undefined;
    try {
      const res = await this.client.getAll().prefix(INSTANCES_PREFIX).exec();
      this.stats.relists++;
      this.known.clear();
      for (const kv of res.kvs) this.apply(kv.key.toString(), kv.value.toString());
      this.changed();
      const revision = BigInt(res.header.revision);
      const watcher = await withTimeout(this.client.watch().prefix(INSTANCES_PREFIX).startRevision(String(revision + 1n)).create(), WATCH_CREATE_TIMEOUT_MS);
      if (this.closed) {
        await watcher.cancel();
        return;
      }
      this.watcher = watcher;
      this.resyncDelay = RESYNC_MIN_MS;
      watcher.on("put", (kv) => {
        this.stats.events++;
        this.apply(kv.key.toString(), kv.value.toString());
        this.changed();
      });
      watcher.on("delete", (kv) => {
        this.stats.events++;
        if (this.known.delete(kv.key.toString())) this.changed();
      });
      // A broken stream, a compaction or etcd coming back (maybe empty): list again from scratch.
      watcher.on("disconnected", () => this.scheduleResync());
      watcher.on("error", () => this.scheduleResync());
      this.markReady();
    } catch (err) {
      this.logger.warn("etcd unreachable; serving the last known instances", { error: (err as Error).message, retryMs: this.resyncDelay });
      this.scheduleResync();
      throw err;
    }
  }

  private scheduleResync(): void {
    if (this.resyncTimer || this.closed) return;
    const delay = this.resyncDelay;
    this.resyncDelay = Math.min(RESYNC_MAX_MS, this.resyncDelay * 2);
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      this.resync().catch(() => undefined);
    }, delay);
  }

  private apply(key: string, value: string): void {
    try {
      this.known.set(key, fromJsonString(InstanceSchema, value, { ignoreUnknownFields: true }));
    } catch (err) {
      this.logger.warn("ignoring an unreadable instance record", { key, error: (err as Error).message });
    }
  }

  private changed(): void {
    this.list = [...this.known.values()];
    for (const listener of this.listeners) listener();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.resyncTimer);
    await this.watcher?.cancel().catch(() => undefined);
    this.lease?.release();
    this.listeners.clear();
    this.client.close();
  }
}
