import { LLAMA_SERVER_ENGINE } from "../engines/proxyPresets.js";
import type { ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { InstanceState } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { Registry } from "../registry/Registry.js";
import { instanceSpecOfModel } from "./instanceSpecOfModel.js";
import { matchesLabels, placeAll } from "./placeInstance.js";
import type { WorkerServiceClients } from "./WorkerServiceClients.js";

/** What a worker needs to run an engine that not every worker runs. */
const ENGINE_NEEDS: Record<string, string> = {
  "llama.cpp": " (it needs node-llama-cpp, an optional dependency, installed on the worker)",
  [LLAMA_SERVER_ENGINE]: ` (it needs llama.cpp's server built on the worker: smmf engine build ${LLAMA_SERVER_ENGINE})`,
};

/**
 * Before the desired state changes: can `count` more instances of the record be placed on the registered
 * workers? Asks a matching worker how much memory one needs (which also proves the source is there), then
 * places them on paper. Throws failed_precondition with the reason when not.
 */
export async function checkPlacement(registry: Registry, clients: WorkerServiceClients, record: ModelRecord, count: number): Promise<void> {
  if (count <= 0) return;
  const spec = record.spec!;
  const workers = registry.workers();
  const refuse = (why: string) => new SmmfError("failed_precondition", `cannot place ${count} instance(s) of '${spec.name}': ${why}`);
  if (workers.length === 0) throw refuse("no worker is registered (start one with 'smmf worker --etcd ... --no-models')");
  const engine = spec.engine || "llama.cpp";
  const capable = workers.filter((w) => w.engines.includes(engine));
  if (capable.length === 0) {
    throw refuse(`no worker runs the engine ${engine}${ENGINE_NEEDS[engine] ?? ""}`);
  }
  const matching = capable.filter((w) => matchesLabels(w.labels, spec.placement));
  if (matching.length === 0) {
    const wanted = Object.entries(spec.placement).map(([k, v]) => `${k}=${v}`).join(",");
    throw refuse(`no worker has the labels ${wanted} (workers: ${workers.map((w) => w.workerId).join(", ")})`);
  }
  let needBytes: number | undefined;
  let lastError: SmmfError | undefined;
  for (const worker of matching) {
    try {
      // A URL source is downloaded by the worker to estimate it (and is then cached for the load): give it time.
      const timeoutMs = /^https?:\/\//i.test(spec.source) ? 600_000 : 30_000;
      const res = await clients.get(worker.address).estimateInstance({ spec: instanceSpecOfModel(record) }, { timeoutMs });
      needBytes = Number(res.memoryBytes);
      break;
    } catch (err) {
      lastError = toSmmfError(err);
      // A bad spec or a missing file is the answer; an unreachable worker is not: ask the next one.
      if (lastError.code !== "unavailable" && lastError.code !== "deadline_exceeded" && lastError.code !== "internal") {
        throw new SmmfError(lastError.code, lastError.message, { param: lastError.param ?? "source" });
      }
    }
  }
  if (needBytes === undefined) throw refuse(`no matching worker answered (${lastError?.message ?? "no answer"})`);
  const instances = registry.snapshot();
  const candidates = matching.map((w) => ({
    workerId: w.workerId,
    labels: w.labels,
    freeBytes: Number(w.memoryFreeBytes),
    modelInstances: instances.filter((i) => i.workerId === w.workerId && i.model === spec.name && i.state !== InstanceState.DRAINING).length,
  }));
  const placed = placeAll(candidates, needBytes, spec.placement, count);
  const failed = placed.find((p) => "reason" in p);
  if (failed && "reason" in failed) throw refuse(failed.reason);
}
