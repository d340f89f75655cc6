import type { RequestRecord } from "./load.js";
import { RIG_MODEL, type Rig } from "./Rig.js";
import { waitFor } from "./sys.js";

/** When each gateway was first seen without the instance in its pick set (absent, or listed but not pickable). */
export interface DropTimes {
  /** Date.now() when each gateway was first seen without it. */
  at: Record<string, number>;
  /** The latest of them: when the last gateway dropped it. */
  last: number;
}

/**
 * Polls every gateway's pick set (GET /api/v1/instances, every `intervalMs`) until the instance has left all
 * of them; resolves with when each was first seen without it. A gateway that does not answer counts as still
 * holding it.
 */
export async function untilDropped(rig: Rig, instanceId: string, options: { timeoutMs?: number; intervalMs?: number; model?: string } = {}): Promise<DropTimes> {
  const at: Record<string, number> = {};
  const gateways = rig.gateways.map((g) => g.name);
  await waitFor(
    `every gateway to drop ${instanceId} from its pick set`,
    async () => {
      await Promise.all(
        gateways
          .filter((g) => at[g] === undefined)
          .map(async (g) => {
            const set = await rig.pickSet(g, options.model ?? RIG_MODEL);
            if (set && !set.includes(instanceId)) at[g] = Date.now();
          }),
      );
      return gateways.every((g) => at[g] !== undefined);
    },
    options.timeoutMs ?? 30_000,
    options.intervalMs ?? 25,
  );
  return { at, last: Math.max(...Object.values(at)) };
}

/** Waits until every gateway's pick set holds the instance again. */
export async function untilPickable(rig: Rig, instanceId: string, timeoutMs = 30_000, model = RIG_MODEL): Promise<number> {
  await waitFor(
    `every gateway to pick ${instanceId} again`,
    async () => (await Promise.all(rig.gateways.map((g) => rig.pickSet(g.name, model)))).every((s) => s?.includes(instanceId)),
    timeoutMs,
    50,
  );
  return Date.now();
}

/**
 * Sends small batches of requests through each gateway until each has had one answered by `instanceId`;
 * resolves with every record sent (so that failures among them can be checked).
 */
export async function untilServedBy(rig: Rig, instanceId: string, timeoutMs = 30_000): Promise<RequestRecord[]> {
  const all: RequestRecord[] = [];
  for (const g of rig.gateways) {
    await waitFor(
      `${g.name} to route a request to ${instanceId}`,
      async () => {
        const records = await rig.load({ targets: [g.url], requests: 6, concurrency: 6, maxTokens: 4, stream: false, timeoutMs: 20_000 }).records;
        all.push(...records);
        return records.some((r) => r.ok && r.instance === instanceId);
      },
      timeoutMs,
      10,
    );
  }
  return all;
}

/** A model of the desired state, as GET /api/v1/models/{name} shows it. */
export interface ModelView {
  name: string;
  generation?: string;
  desiredReplicas?: number;
  instances?: { instanceId: string; workerId: string; state: string; generation?: string }[];
}

/** Waits until a model has `replicas` online instances of its current generation, and nothing else (as `via` sees it). */
export async function untilSettled(rig: Rig, via: string, model: string, replicas: number, timeoutMs = 30_000): Promise<ModelView> {
  return waitFor(
    `'${model}' to have ${replicas} online instance(s) of its current generation (seen by ${via})`,
    async () => {
      const res = await rig.http(`${rig.component(via).url}/api/v1/models/${encodeURIComponent(model)}`, { timeoutMs: 3_000 });
      if (res.status !== 200) return undefined;
      const view = res.json() as ModelView;
      const instances = view.instances ?? [];
      const settled = instances.length === replicas && instances.every((i) => i.state === "INSTANCE_STATE_ONLINE" && i.generation === view.generation);
      return settled ? view : undefined;
    },
    timeoutMs,
    100,
  );
}

/** Requests whose stream was under way on `instanceId` at `at` (began before, ended after). */
export function underWayAt(records: RequestRecord[], instanceId: string, at: number): RequestRecord[] {
  return records.filter((r) => r.instance === instanceId && r.start < at && r.end > at);
}

/** The value of a Prometheus counter or gauge (summed over its series whose labels include `labels`). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name) || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) found[l[1]] = l[2];
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/** Milliseconds, rounded, for reports. */
export const ms = (n: number) => `${Math.round(n)} ms`;
