import { create, toJsonString } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { Etcd3, Lease } from "etcd3";
import { ControllerLeaderSchema } from "../gen/smmf/v1/controller_pb.js";
import { ELECTION_KEY, ETCD_ROOT } from "../registry/instanceKey.js";
import type { Logger } from "../telemetry/createLogger.js";

/** The leader's record, complete with its term; readers (operators, tools) look here. */
export const LEADER_KEY = `${ETCD_ROOT}controller/leader`;
export { ELECTION_KEY };
export const LEADER_RECORD_VERSION = 1;

export interface LeaderElectionOptions {
  client: Etcd3;
  controllerId: string;
  /** Where this controller's API listens, published while it leads. */
  address: string;
  /** TTL of the leader key's lease: a dead leader is replaced within about this long. */
  ttlSeconds: number;
  logger: Logger;
  /** Called when this controller becomes leader; `signal` aborts when it stops leading. */
  onElected(term: bigint, signal: AbortSignal): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Leader election on etcd: the leader is whoever created ELECTION_KEY under its own lease (a transaction that
 * succeeds only while the key does not exist); it then writes its record, term included, at LEADER_KEY under
 * the same lease. The others watch the election key and try again when it goes: when the leader resigns (its
 * lease is revoked) at once, when it dies once its lease expires. The term is the revision that created the
 * election key, so a newer leader always has a higher term. A leader whose lease is lost
 * (etcd unreachable for longer than the TTL) stops leading before anyone else can start.
 */
/** How often a controller checks that its lease was renewed within the TTL. */
const RENEWAL_CHECK_MS = 100;

export class LeaderElection {
  private readonly options: LeaderElectionOptions;
  private closed = false;
  private lease?: Lease;
  private wake?: () => void;
  private loop?: Promise<void>;
  /** The term while this controller leads, else undefined. */
  term?: bigint;
  /** Whether it holds a lease of etcd now (leading or standing by), i.e. it takes part in the election. */
  campaigning = false;

  constructor(options: LeaderElectionOptions) {
    this.options = options;
  }

  start(): void {
    this.loop ??= this.campaign();
  }

  get isLeader(): boolean {
    return this.term !== undefined;
  }

  private async campaign(): Promise<void> {
    const { client, controllerId, logger } = this.options;
    let backoff = 200;
    while (!this.closed) {
      const lease = client.lease(this.options.ttlSeconds);
      this.lease = lease;
      let lost = false;
      let watchdog: NodeJS.Timeout | undefined;
      let renewed = Date.now();
      const lostPromise = new Promise<void>((resolve) => {
        const loseIt = (why: string) => {
          if (lost) return;
          lost = true;
          clearInterval(watchdog);
          if (!this.closed) logger.warn("controller lease lost", { error: why });
          resolve();
        };
        lease.on("lost", (err) => loseIt(err.message));
        // etcd3 gives a lease up only after 2 × TTL without a renewal, and only when its next try to reach etcd
        // returns (which may wait on its own backoff): past one TTL without a renewal the lease may be gone in
        // etcd already, so the controller lets go then (a leader steps down, /readyz answers 503).
        lease.on("keepaliveSucceeded", () => (renewed = Date.now()));
        watchdog = setInterval(() => {
          if (Date.now() - renewed > this.options.ttlSeconds * 1000) loseIt(`no renewal of the lease for its TTL (${this.options.ttlSeconds} s)`);
        }, RENEWAL_CHECK_MS);
        watchdog.unref();
      });
      try {
        const leaseId = await lease.grant();
        renewed = Date.now();
        this.campaigning = true;
        for (;;) {
          if (this.closed || lost) break;
          const record = create(ControllerLeaderSchema, { controllerId, address: this.options.address, electedAt: timestampNow(), version: LEADER_RECORD_VERSION });
          const res = await client.if(ELECTION_KEY, "Create", "==", 0).then(client.put(ELECTION_KEY).value(toJsonString(ControllerLeaderSchema, record)).lease(leaseId)).commit();
          if (res.succeeded) {
            // The term is known once the election key exists. The leader key is written only now, so a
            // reader never sees a leader without its term; both go with the lease.
            const term = BigInt(res.header.revision);
            record.term = term;
            await client.put(LEADER_KEY).value(toJsonString(ControllerLeaderSchema, record)).lease(leaseId).exec().catch(async (err: unknown) => {
              await lease.revoke().catch(() => undefined); // resign rather than hold the election unseen until the TTL
              throw err;
            });
            await this.lead(term, lostPromise);
            break;
          }
          await this.waitForVacancy(BigInt(res.header.revision), lostPromise);
        }
        backoff = 200;
      } catch (err) {
        if (!this.closed) logger.warn("controller election: etcd unreachable; will retry", { error: (err as Error).message, retryMs: backoff });
        await sleep(backoff);
        backoff = Math.min(2_000, backoff * 2);
      } finally {
        clearInterval(watchdog);
        this.campaigning = false;
        if (this.lease === lease) this.lease = undefined;
        if (!this.closed) lease.release();
      }
    }
  }

  private async lead(term: bigint, lost: Promise<void>): Promise<void> {
    const abort = new AbortController();
    this.term = term;
    this.options.logger.info("leading", { controller: this.options.controllerId, term: String(term) });
    try {
      this.options.onElected(term, abort.signal);
      await Promise.race([lost, new Promise<void>((r) => (this.wake = r))]);
    } finally {
      this.term = undefined;
      abort.abort();
      if (!this.closed) this.options.logger.warn("no longer leading", { controller: this.options.controllerId, term: String(term) });
    }
  }

  /** Waits until the election key is deleted (or a TTL has passed, to look again), or our lease is lost. */
  private async waitForVacancy(revision: bigint, lost: Promise<void>): Promise<void> {
    const watcher = await this.options.client.watch().key(ELECTION_KEY).startRevision(String(revision + 1n)).create();
    try {
      await Promise.race([
        lost,
        new Promise<void>((resolve) => {
          this.wake = resolve;
          watcher.on("delete", () => resolve());
          watcher.on("disconnected", () => resolve());
          watcher.on("error", () => resolve());
          setTimeout(resolve, this.options.ttlSeconds * 1000).unref();
        }),
      ]);
    } finally {
      await watcher.cancel().catch(() => undefined);
    }
  }

  /** Stops campaigning; a leader resigns (revokes its lease, so a standby takes over at once). */
  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    const lease = this.lease;
    if (lease) await lease.revoke().catch(() => undefined);
    await this.loop?.catch(() => undefined);
  }
}
