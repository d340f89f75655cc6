import { SmmfError } from "../errors/SmmfError.js";

const isEmptyObject = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;

/**
 * Request fields that llama.cpp instances accept without acting on them, because they do not change the
 * answer (or only ask for what happens anyway), with the values that keep them neutral. OpenAI's SDKs and
 * agent frameworks send these routinely.
 */
const NEUTRAL: Record<string, (value: unknown, n: number) => boolean> = {
  user: () => true,
  metadata: () => true,
  store: () => true,
  service_tier: () => true,
  prompt_cache_key: () => true,
  safety_identifier: () => true,
  // Predicted outputs only speed an answer up.
  prediction: () => true,
  modalities: (v) => Array.isArray(v) && v.every((m) => m === "text"),
  logit_bias: isEmptyObject,
  echo: (v) => v === false,
  suffix: (v) => v === "",
  best_of: (v, n) => v === 1 || v === n,
  function_call: (v) => v === "none",
  functions: (v) => Array.isArray(v) && v.length === 0,
};

/**
 * Checks the fields a llama.cpp instance does not interpret: neutral ones pass; any other would change the
 * answer in a way it cannot honour, and is refused with invalid_argument naming it.
 */
export function checkLlamaCppExtra(extra: Record<string, unknown> | undefined, n: number): void {
  if (!extra) return;
  for (const [name, value] of Object.entries(extra)) {
    if (value === null) continue;
    const neutral = Object.hasOwn(NEUTRAL, name) ? NEUTRAL[name] : undefined;
    if (neutral?.(value, n)) continue;
    throw new SmmfError("invalid_argument", neutral ? `'${name}' is not supported by this model (llama.cpp) with this value.` : `Unrecognized request argument supplied: '${name}' (not supported by this model, llama.cpp).`, { param: name });
  }
}
