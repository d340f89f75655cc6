import type { Instance } from "../gen/smmf/v1/instance_pb.js";

/**
 * Load-balancing policies; per model, with a gateway-wide default. `prefix` (the default) is p2c with prefix
 * affinity for generations (see PrefixAffinity, applied by the router); here, for other calls, it is p2c.
 */
export type BalancingPolicy = "prefix" | "p2c" | "round-robin" | "weighted";
export const BALANCING_POLICIES: readonly BalancingPolicy[] = ["prefix", "p2c", "round-robin", "weighted"];

/**
 * Picks one of `candidates` (non-empty, all eligible):
 * - p2c (and prefix, whose affinity the router applies before this): two at random, the one with less load
 *   (requests in flight over max concurrency);
 * - round-robin: the next in instance-id order after the last pick for this model (`cursor`);
 * - weighted: at random, in proportion to each instance's weight (0 counts as 1).
 */
export function chooseInstance(
  policy: BalancingPolicy,
  candidates: readonly Instance[],
  load: (instance: Instance) => number,
  cursor: { lastId?: string },
  random: () => number = Math.random,
): Instance {
  if (candidates.length === 1) return candidates[0];
  switch (policy) {
    case "round-robin": {
      // The first in id order after the last pick (wrapping): fair even when the set of free instances changes.
      const sorted = [...candidates].sort((a, b) => (a.instanceId < b.instanceId ? -1 : 1));
      const pick = sorted.find((c) => cursor.lastId === undefined || c.instanceId > cursor.lastId) ?? sorted[0];
      cursor.lastId = pick.instanceId;
      return pick;
    }
    case "weighted": {
      const total = candidates.reduce((sum, c) => sum + (c.weight || 1), 0);
      let r = random() * total;
      for (const c of candidates) {
        r -= c.weight || 1;
        if (r < 0) return c;
      }
      return candidates[candidates.length - 1];
    }
    default: {
      const i = Math.floor(random() * candidates.length);
      let j = Math.floor(random() * (candidates.length - 1));
      if (j >= i) j++;
      const a = candidates[i];
      const b = candidates[j];
      return load(b) < load(a) ? b : a;
    }
  }
}
