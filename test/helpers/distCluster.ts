import OpenAI from "openai";
import { freePort, startSmmf, type SmmfProcess } from "./childProcess.js";
import type { TestEtcd } from "./startEtcd.js";
import { testModelPath } from "./testModel.js";

/** Helpers for the distributed-mode tests: `smmf worker` and `smmf gateway` processes on one test etcd. */

export const MODEL = "stories260K";
export const INSTANCES_PREFIX = "/smmf/v1/instances/";

/** The Instance record as a worker publishes it in etcd (protobuf JSON). */
export interface InstanceRecord {
  instanceId: string;
  model: string;
  engine: string;
  workerId: string;
  address: string;
  state: "INSTANCE_STATE_ONLINE" | "INSTANCE_STATE_DRAINING" | string;
  maxConcurrency: number;
  contextSize: number;
  embeddingSize: number;
  startedAt: string;
  version: number;
  [field: string]: unknown;
}

export interface RegistryEntry {
  key: string;
  /** The raw value, as etcdctl prints it. */
  value: string;
  record: InstanceRecord;
}

export interface DistWorker {
  proc: SmmfProcess;
  workerId: string;
  /** The gRPC address the worker printed (and advertises). */
  address: string;
  /** The id of its one instance (of MODEL), from its key in etcd. */
  instanceId: string;
  /** Its key in etcd. */
  key: string;
}

export interface DistGateway {
  proc: SmmfProcess;
  /** e.g. http://127.0.0.1:PORT/v1 */
  baseURL: string;
  openai: OpenAI;
}

export interface WorkerOptions {
  workerId?: string;
  sequences?: number;
  leaseTtl?: number;
  shutdownGraceMs?: number;
  contextSize?: number;
  extra?: string[];
}

export { sleep, waitFor } from "./waitFor.js";
import { waitFor } from "./waitFor.js";

/** Every instance key with its value, through `etcdctl get --prefix /smmf/v1/instances/`; each value parsed as JSON. */
export async function registryEntries(etcd: TestEtcd): Promise<RegistryEntry[]> {
  const out = await etcd.etcdctl("--dial-timeout=2s", "--command-timeout=5s", "get", "--prefix", INSTANCES_PREFIX);
  const lines = out.split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (lines.length % 2 !== 0) throw new Error(`etcdctl printed an odd number of lines (key/value pairs expected):\n${out}`);
  const entries: RegistryEntry[] = [];
  for (let i = 0; i < lines.length; i += 2) {
    const key = lines[i];
    const value = lines[i + 1];
    let record: InstanceRecord;
    try {
      record = JSON.parse(value) as InstanceRecord;
    } catch (err) {
      throw new Error(`the value of ${key} is not JSON: ${value} (${(err as Error).message})`);
    }
    entries.push({ key, value, record });
  }
  return entries;
}

/** The entries of one worker. */
export async function entriesOf(etcd: TestEtcd, workerId: string): Promise<RegistryEntry[]> {
  return (await registryEntries(etcd)).filter((e) => e.record.workerId === workerId);
}

/** The lease id (decimal) a key is bound to, or undefined when the key does not exist. */
export async function leaseOf(etcd: TestEtcd, key: string): Promise<string | undefined> {
  // With -w json, etcdctl prints the lease as a JSON number that may exceed 2^53: read it as text.
  const out = await etcd.etcdctl("--dial-timeout=2s", "--command-timeout=5s", "get", key, "-w", "json");
  const match = /"lease":(\d+)/.exec(out);
  if (!/"kvs":/.test(out)) return undefined;
  return match?.[1] ?? "0";
}

let workerCounter = 0;

/** Starts `smmf worker` on the test etcd with the test model; resolves once it serves and its key is in etcd. */
export async function startDistWorker(etcd: TestEtcd, options: WorkerOptions = {}): Promise<DistWorker> {
  const workerId = options.workerId ?? `dist-worker-${process.pid}-${++workerCounter}`;
  const args = [
    "worker",
    "--etcd", etcd.endpoints,
    "--model", `${MODEL}=${testModelPath()}`,
    "--gpu", "off",
    "--threads", "1",
    "--sequences", String(options.sequences ?? 4),
    "--lease-ttl", String(options.leaseTtl ?? 3),
    "--log-level", "warn",
    "--worker-id", workerId,
  ];
  if (options.shutdownGraceMs !== undefined) args.push("--shutdown-grace-ms", String(options.shutdownGraceMs));
  if (options.contextSize !== undefined) args.push("--context-size", String(options.contextSize));
  args.push(...(options.extra ?? []));
  const proc = await startSmmf(args, { timeoutMs: 60_000 });
  const m = /SMMF worker (\S+) serving (\S+) at (\S+)/.exec(proc.stdout());
  if (!m) throw new Error(`unexpected worker output: ${proc.stdout()}`);
  if (m[1] !== workerId) throw new Error(`worker printed id ${m[1]}, expected ${workerId}`);
  const address = m[3];
  const entry = await waitFor(`the key of worker ${workerId} in etcd`, async () => (await entriesOf(etcd, workerId))[0], 10_000);
  return { proc, workerId, address, instanceId: entry.record.instanceId, key: entry.key };
}

/** Starts `smmf gateway` on a free port on the test etcd (`env`: added to its environment). */
export async function startDistGateway(etcd: TestEtcd, extra: string[] = [], env: Record<string, string> = {}): Promise<DistGateway> {
  const port = await freePort();
  const proc = await startSmmf(["gateway", "--etcd", etcd.endpoints, "--port", String(port), "--log-level", "warn", ...extra], { timeoutMs: 60_000, env });
  const m = /SMMF gateway serving at (\S+)/.exec(proc.stdout());
  if (!m) throw new Error(`unexpected gateway output: ${proc.stdout()}`);
  const baseURL = m[1];
  return { proc, baseURL, openai: new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 }) };
}

/** Waits until the gateway lists the model as ready (it has discovered at least one online instance). */
export async function waitUntilReady(gateway: DistGateway, timeoutMs = 10_000): Promise<void> {
  const root = gateway.baseURL.replace(/\/v1$/, "");
  await waitFor("the gateway to be ready", async () => (await fetch(`${root}/readyz`)).status === 200, timeoutMs);
}

/** Kills (SIGKILL) every process given that still runs; never throws. */
export async function killAll(...procs: (SmmfProcess | DistWorker | DistGateway | undefined)[]): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      if (!p) return;
      const proc = "proc" in p ? p.proc : p;
      await proc.kill().catch(() => undefined);
    }),
  );
}

export interface CompletionResult {
  instance: string;
  text: string;
  finishReason: string | null;
  completionTokens: number;
  /** Streaming only: content chunks received. */
  chunks?: number;
  overheadMs?: string | null;
}

/** One non-streaming text completion through the gateway; the instance is the x-smmf-instance header. */
export async function complete(openai: OpenAI, maxTokens: number, options: { prompt?: string; timeoutMs?: number } = {}): Promise<CompletionResult> {
  const { data, response } = await openai.completions
    .create({ model: MODEL, prompt: options.prompt ?? "Once upon a time", max_tokens: maxTokens, temperature: 1 }, options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs })
    .withResponse();
  return {
    instance: response.headers.get("x-smmf-instance") ?? "",
    text: data.choices[0]?.text ?? "",
    finishReason: data.choices[0]?.finish_reason ?? null,
    completionTokens: data.usage?.completion_tokens ?? -1,
    overheadMs: response.headers.get("x-smmf-overhead-ms"),
  };
}

/** Runs `tasks` with at most `limit` running at once; resolves with every outcome (never rejects). */
export async function runLimited<T>(count: number, limit: number, task: (i: number) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  const results: PromiseSettledResult<T>[] = new Array(count);
  let next = 0;
  const lane = async () => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      try {
        results[i] = { status: "fulfilled", value: await task(i) };
      } catch (reason) {
        results[i] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, lane));
  return results;
}

/** Counts of each value. */
export function countBy(values: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return counts;
}

/** A readable summary of rejected outcomes (for assertion messages). */
export function failures(results: PromiseSettledResult<unknown>[]): string[] {
  return results.flatMap((r, i) => (r.status === "rejected" ? [`#${i}: ${(r.reason as Error)?.message ?? String(r.reason)}`] : []));
}
