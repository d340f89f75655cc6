import type { Instance } from "../gen/smmf/v1/instance_pb.js";
import type { PrefixKeys } from "./prefixKeys.js";

/** Prefix keys a gateway remembers by default (each a few dozen bytes, plus its map entry: a few MB). */
export const DEFAULT_PREFIX_MEMORY = 50_000;

/**
 * How much busier than the least-busy free instance (in load: requests in flight over max concurrency) an
 * instance may be and still get a request whose prefix it holds. 0.5 = half its slots: with 8 sequences a
 * conversation stays where its cache is until its instance runs 4 more requests than the least-busy one. A
 * prefix hit saves the prompt's evaluation (the first token comes sooner), worth a short wait behind a few more
 * requests; beyond half the capacity the extra requests cost every stream on it more than the cache saves,
 * and one instance could otherwise run full while another idles. With 1 or 2 sequences any free instance
 * passes (loads of free instances differ by at most 0.5), so affinity holds whenever there is room.
 */
export const PREFIX_SLACK = 0.5;

/** Load differences below this are ties (loads are ratios of small integers). */
const EPSILON = 1e-9;

/**
 * How a request was routed under the `prefix` policy: `hit`, to the instance that holds the longest of its
 * prefixes remembered; `miss`, no instance of those that could take it is remembered for it (a new
 * conversation, or its instance is gone); `overflow`, its instance is remembered but full or too busy
 * (beyond the slack), so it went elsewhere.
 */
export type PrefixOutcome = "hit" | "miss" | "overflow";

export interface PrefixAffinityOptions {
  /** Keys remembered at most (oldest used first out); default 50,000. */
  maxKeys?: number;
  /** See PREFIX_SLACK. */
  slack?: number;
  random?: () => number;
}

export interface PrefixChoice {
  instance: Instance;
  outcome: PrefixOutcome;
  /** Blocks of the request the chosen instance is remembered to hold (0 on a miss or an overflow). */
  depth: number;
}

/**
 * Prefix-aware routing for one gateway: which instance last served a request ending at each prefix key (see
 * `prefixKeysOf`), in a bounded memory (least recently used out first), and the rule that uses it.
 *
 * The rule: a request follows the deepest of its keys remembered on an instance that is still healthy (online,
 * not ejected, not already tried by this request), to that instance A, only if A has a free slot and
 * load(A) <= (least load over the instances with a free slot) + slack. Otherwise it is placed as a new
 * conversation: power of two choices on load, ties (idle instances) to the one that started fewer
 * conversations, so that new conversations spread evenly. Affinity therefore never sends a request to a full
 * instance, and never to one more than `slack` of its capacity busier than the least-busy free one: the
 * imbalance it may add is bounded by slack x max concurrency requests per instance.
 *
 * Only where requests end is remembered: a later request that holds such a key continues that request (the
 * next turn of a conversation, or the same prompt again), and the engine keeps a finished request's tokens
 * cached. Heads that many requests share (the model's tools, a common system prompt) are not followed: every
 * instance that served any of them holds those, and following one would pile new conversations on one instance.
 */
export class PrefixAffinity {
  /** key -> id of the instance that last served a request ending there; Map order is least recently used first. */
  private readonly owners = new Map<string, string>();
  /** Conversations placed on each instance (misses and overflows): the tie-break that spreads new ones. */
  private readonly started = new Map<string, number>();
  readonly maxKeys: number;
  readonly slack: number;
  private readonly random: () => number;

  constructor(options: PrefixAffinityOptions = {}) {
    this.maxKeys = Math.max(1, options.maxKeys ?? DEFAULT_PREFIX_MEMORY);
    this.slack = options.slack ?? PREFIX_SLACK;
    this.random = options.random ?? Math.random;
  }

  /** Keys remembered now (never more than maxKeys). */
  get size(): number {
    return this.owners.size;
  }

  /** The deepest of `keys` remembered on one of `candidates`, with its depth in blocks. */
  lookup(keys: readonly string[], candidates: readonly Instance[]): { instance: Instance; depth: number } | undefined {
    for (let i = keys.length - 1; i >= 0; i--) {
      const owner = this.owners.get(keys[i]);
      if (owner === undefined) continue;
      const instance = find(candidates, owner);
      if (instance) return { instance, depth: i + 1 };
    }
    return undefined;
  }

  /**
   * Chooses among `free` (non-empty: healthy instances with a free slot) for a request with these keys, by the
   * rule above. `healthy` are all instances the request may go to (free or full): a remembered instance among
   * them that cannot take it makes an overflow; one not among them (gone, ejected, tried) is passed over.
   */
  choose(prefix: PrefixKeys, free: readonly Instance[], healthy: readonly Instance[], load: (instance: Instance) => number): PrefixChoice {
    let least = Infinity;
    for (const c of free) least = Math.min(least, load(c));
    let overflow = false;
    const keys = prefix.keys;
    let passed: string | undefined;
    for (let i = keys.length - 1; i >= 0; i--) {
      const owner = this.owners.get(keys[i]);
      if (owner === undefined || owner === passed) continue;
      const instance = find(free, owner);
      if (instance) {
        if (load(instance) <= least + this.slack + EPSILON) return { instance, outcome: "hit", depth: i + 1 };
        overflow = true;
        break;
      }
      if (find(healthy, owner)) {
        overflow = true;
        break;
      }
      passed = owner;
    }
    const instance = this.place(free, load);
    return { instance, outcome: overflow ? "overflow" : "miss", depth: 0 };
  }

  /** After routing: the keys where this request ends point at `instanceId`, as the most recently used. */
  record(prefix: PrefixKeys, instanceId: string): void {
    const keys = prefix.keys;
    for (let i = keys.length - prefix.ends; i < keys.length; i++) {
      this.owners.delete(keys[i]);
      this.owners.set(keys[i], instanceId);
    }
    while (this.owners.size > this.maxKeys) this.owners.delete(this.owners.keys().next().value!);
  }

  /** Forgets the conversation counts of instances no longer in the registry (their keys age out). */
  retain(live: ReadonlySet<string>): void {
    for (const id of this.started.keys()) if (!live.has(id)) this.started.delete(id);
  }

  /** Forgets an instance at once: its keys and its count. */
  forget(instanceId: string): void {
    for (const [key, owner] of this.owners) if (owner === instanceId) this.owners.delete(key);
    this.started.delete(instanceId);
  }

  /**
   * A new conversation's instance: of two at random, the less loaded; on a tie, the one that started fewer
   * conversations. An instance first seen here starts at the fewest of those already counted among these, not
   * at 0: a new instance does not take every new conversation until it has caught up with the old ones.
   */
  private place(free: readonly Instance[], load: (instance: Instance) => number): Instance {
    let least: number | undefined;
    let unseen = false;
    for (const c of free) {
      const n = this.started.get(c.instanceId);
      if (n === undefined) unseen = true;
      else if (least === undefined || n < least) least = n;
    }
    if (unseen) for (const c of free) if (!this.started.has(c.instanceId)) this.started.set(c.instanceId, least ?? 0);
    let pick = free[0];
    if (free.length > 1) {
      const i = Math.floor(this.random() * free.length);
      let j = Math.floor(this.random() * (free.length - 1));
      if (j >= i) j++;
      const a = free[i];
      const b = free[j];
      const la = load(a);
      const lb = load(b);
      if (lb < la - EPSILON) pick = b;
      else if (la < lb - EPSILON) pick = a;
      else pick = this.started.get(b.instanceId)! < this.started.get(a.instanceId)! ? b : a;
    }
    this.started.set(pick.instanceId, this.started.get(pick.instanceId)! + 1);
    return pick;
  }
}

function find(instances: readonly Instance[], instanceId: string): Instance | undefined {
  for (const instance of instances) if (instance.instanceId === instanceId) return instance;
  return undefined;
}
