import { InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";

/**
 * Picks the online instance of `model` with the fewest requests in flight from this gateway.
 * Unknown model → model_not_found (404); known but none online (or none with the capability) → unavailable (503).
 */
export function pickInstance(
  instances: readonly Instance[],
  model: string,
  inFlight: (instanceId: string) => number,
  needs: { embeddings?: boolean } = {},
): Instance {
  let known = false;
  let best: Instance | undefined;
  let bestLoad = Infinity;
  for (const instance of instances) {
    if (instance.model !== model) continue;
    known = true;
    if (instance.state !== InstanceState.ONLINE) continue;
    if (needs.embeddings && instance.embeddingSize === 0) continue;
    const load = inFlight(instance.instanceId) / Math.max(1, instance.maxConcurrency);
    if (load < bestLoad) {
      best = instance;
      bestLoad = load;
    }
  }
  if (best) return best;
  if (!known) throw new SmmfError("model_not_found", `The model '${model}' does not exist`, { param: "model" });
  if (needs.embeddings && instances.some((i) => i.model === model && i.state === InstanceState.ONLINE)) {
    throw new SmmfError("invalid_argument", `The model '${model}' does not serve embeddings`, { param: "model" });
  }
  throw new SmmfError("unavailable", `No instance of model '${model}' is available now; retry later`);
}
