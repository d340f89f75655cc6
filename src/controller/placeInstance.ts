import { mib } from "../util/mib.js";

export interface PlacementCandidate {
  workerId: string;
  labels: Record<string, string>;
  /** Memory left for new instances, in bytes. */
  freeBytes: number;
  /** Live instances of the model being placed already on this worker. */
  modelInstances: number;
}

export type Placement = { workerId: string } | { reason: string };


export function matchesLabels(labels: Record<string, string>, wanted: Record<string, string>): boolean {
  return Object.entries(wanted).every(([k, v]) => labels[k] === v);
}

function describeLabels(wanted: Record<string, string>): string {
  return Object.entries(wanted).map(([k, v]) => `${k}=${v}`).join(",");
}

/**
 * Picks the worker for one new instance: among the workers carrying the placement labels and with room for
 * `needBytes`, the one with the fewest instances of the model (replicas spread over workers), then the
 * most free memory. Says why when none fits.
 */
export function placeInstance(candidates: readonly PlacementCandidate[], needBytes: number, placement: Record<string, string>): Placement {
  if (candidates.length === 0) return { reason: "no worker is connected" };
  const matching = candidates.filter((c) => matchesLabels(c.labels, placement));
  if (matching.length === 0) return { reason: `no worker has the labels ${describeLabels(placement)} (workers: ${candidates.map((c) => c.workerId).join(", ")})` };
  const fitting = matching.filter((c) => c.freeBytes >= needBytes);
  if (fitting.length === 0) {
    const best = [...matching].sort((a, b) => b.freeBytes - a.freeBytes)[0];
    return { reason: `no worker has room: an instance needs about ${mib(needBytes)}; the most free on a matching worker is ${mib(best.freeBytes)} (${best.workerId})` };
  }
  fitting.sort((a, b) => a.modelInstances - b.modelInstances || b.freeBytes - a.freeBytes || a.workerId.localeCompare(b.workerId));
  return { workerId: fitting[0].workerId };
}

/**
 * Places `count` instances one after another (each taking its memory), as a start or scale-up would;
 * returns the reason for the first one that does not fit.
 */
export function placeAll(candidates: readonly PlacementCandidate[], needBytes: number, placement: Record<string, string>, count: number): Placement[] {
  const pool = candidates.map((c) => ({ ...c }));
  const out: Placement[] = [];
  for (let i = 0; i < count; i++) {
    const placed = placeInstance(pool, needBytes, placement);
    out.push(placed);
    if ("reason" in placed) break;
    const chosen = pool.find((c) => c.workerId === placed.workerId)!;
    chosen.freeBytes -= needBytes;
    chosen.modelInstances++;
  }
  return out;
}
