import { fromJsonString, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { Etcd3, Watcher } from "etcd3";
import type { Logger } from "../telemetry/createLogger.js";
import { withTimeout } from "./withTimeout.js";

const RESYNC_MIN_MS = 200;
const RESYNC_MAX_MS = 5_000;
/** A watch that is not set up by then (etcd went away after the listing) is given up and the prefix listed again. */
const WATCH_CREATE_TIMEOUT_MS = 5_000;

export interface PrefixWatcherOptions<Desc extends DescMessage> {
  client: Etcd3;
  prefix: string;
  /** The protobuf message each value holds, as JSON. */
  schema: Desc;
  logger: Logger;
  /** What the values are, for log lines ("instance", "worker", "model"). */
  what: string;
}

/**
 * Mirrors every key under an etcd prefix in memory: lists the prefix, then watches from the next revision;
 * after a compaction, a broken watch or a reconnect it lists again. While etcd is unreachable the last known
 * set stays. Values that do not parse are logged and skipped.
 */
export class PrefixWatcher<Desc extends DescMessage> {
  private readonly options: PrefixWatcherOptions<Desc>;
  private readonly known = new Map<string, MessageShape<Desc>>();
  private list: readonly MessageShape<Desc>[] = [];
  private readonly listeners = new Set<() => void>();
  private watcher?: Watcher;
  private started = false;
  private resyncTimer?: NodeJS.Timeout;
  private resyncDelay = RESYNC_MIN_MS;
  private closed = false;
  private readyPromise?: Promise<void>;
  private markReady: () => void = () => undefined;
  /** Counts of watch events and listings. */
  readonly stats = { events: 0, relists: 0 };

  constructor(options: PrefixWatcherOptions<Desc>) {
    this.options = options;
  }

  /** Whether the prefix is being watched now (false while etcd is unreachable). */
  get watching(): boolean {
    return this.watcher !== undefined;
  }

  /** The current values, from memory: no round trip. */
  snapshot(): readonly MessageShape<Desc>[] {
    this.start();
    return this.list;
  }

  /** The current values by key. */
  entries(): ReadonlyMap<string, MessageShape<Desc>> {
    this.start();
    return this.known;
  }

  /** Calls `listener` after every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void {
    this.start();
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves once the prefix has been listed and is being watched (at the first try, or later once etcd is
   * back); rejects when that has not happened within `timeoutMs`. Watching goes on trying either way.
   */
  ready(timeoutMs = 10_000): Promise<void> {
    this.start();
    return withTimeout(this.readyPromise!, timeoutMs);
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.readyPromise = new Promise<void>((resolve) => (this.markReady = resolve));
    this.resync().catch(() => undefined);
  }

  private async resync(): Promise<void> {
    if (this.closed) return;
    const { client, prefix } = this.options;
    void this.watcher?.cancel().catch(() => undefined);
    this.watcher = undefined;
    try {
      const res = await client.getAll().prefix(prefix).exec();
      this.stats.relists++;
      this.known.clear();
      for (const kv of res.kvs) this.apply(kv.key.toString(), kv.value.toString());
      this.changed();
      const revision = BigInt(res.header.revision);
      const watcher = await withTimeout(client.watch().prefix(prefix).startRevision(String(revision + 1n)).create(), WATCH_CREATE_TIMEOUT_MS);
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
      const lost = () => {
        if (this.watcher === watcher) {
          this.watcher = undefined;
          void watcher.cancel().catch(() => undefined);
        }
        this.scheduleResync();
      };
      watcher.on("disconnected", lost);
      watcher.on("error", lost);
      this.markReady();
    } catch (err) {
      this.options.logger.warn(`etcd unreachable; keeping the last known ${this.options.what}s`, { error: (err as Error).message, retryMs: this.resyncDelay });
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
      this.known.set(key, fromJsonString(this.options.schema, value, { ignoreUnknownFields: true }));
    } catch (err) {
      this.options.logger.warn(`ignoring an unreadable ${this.options.what} record`, { key, error: (err as Error).message });
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
    this.listeners.clear();
  }
}
