import { InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import type { ModelRecord } from "../gen/smmf/v1/model_pb.js";

export interface ModelPlan {
  /** New instances (of the record's generation) to load now. */
  load: number;
  /** Instances to drain (and so unload) now. */
  drain: Instance[];
  /** Whether the model is as desired: the replica count, all online, all of the current generation. */
  converged: boolean;
}

/**
 * Which of `candidates` goes first when some must: loading ones, then offline, then those on the worker
 * with the most live instances of the model (so that the rest stay spread), then the newest.
 */
function drainOrder(candidates: Instance[], live: Instance[]): Instance[] {
  const perWorker = new Map<string, number>();
  for (const i of live) perWorker.set(i.workerId, (perWorker.get(i.workerId) ?? 0) + 1);
  const rank = (i: Instance) => (i.state === InstanceState.LOADING ? 0 : i.state === InstanceState.OFFLINE ? 1 : 2);
  return [...candidates].sort((a, b) => rank(a) - rank(b) || perWorker.get(b.workerId)! - perWorker.get(a.workerId)! || Number(b.startedAt?.seconds ?? 0n) - Number(a.startedAt?.seconds ?? 0n));
}

/**
 * One level-based step for one model: compares the desired record with the model's managed instances
 * (as observed, loads already sent counted as loading) and says what to do now. Without a record (the model
 * was stopped) every instance drains. With instances of an older generation (a restart or an update) it
 * rolls: one new instance loads, and only once it is online does one old instance drain, so the number of
 * serving instances never drops below the replica count.
 */
export function planModel(record: ModelRecord | undefined, instances: readonly Instance[]): ModelPlan {
  const live = instances.filter((i) => i.state !== InstanceState.DRAINING);
  const replicas = record?.spec?.replicas ?? 0;
  if (!record || replicas === 0) return { load: 0, drain: live, converged: instances.length === 0 };
  const generation = record.generation;
  const outdated = live.filter((i) => i.generation < generation);
  const loading = live.filter((i) => i.state === InstanceState.LOADING);
  if (live.length < replicas) return { load: replicas - live.length, drain: [], converged: false };
  if (outdated.length > 0) {
    if (loading.length > 0) return { load: 0, drain: [], converged: false };
    if (live.length > replicas) {
      // Never below the replica count of online instances: an online old one goes only when enough others are online.
      let online = live.filter((i) => i.state === InstanceState.ONLINE).length;
      const drain: Instance[] = [];
      for (const victim of drainOrder(outdated, live).slice(0, live.length - replicas)) {
        if (victim.state === InstanceState.ONLINE) {
          if (online - 1 < replicas) break;
          online--;
        }
        drain.push(victim);
      }
      return { load: 0, drain, converged: false };
    }
    return { load: 1, drain: [], converged: false };
  }
  if (live.length > replicas) return { load: 0, drain: drainOrder(live, live).slice(0, live.length - replicas), converged: false };
  const converged = instances.length === replicas && live.every((i) => i.state === InstanceState.ONLINE);
  return { load: 0, drain: [], converged };
}
