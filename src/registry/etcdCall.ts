import { SmmfError } from "../errors/SmmfError.js";
import { withTimeout } from "./withTimeout.js";

/** Longest an etcd call of an API request may take. */
export const ETCD_CALL_MS = 5_000;

/**
 * One etcd call made for an API request, with a deadline; etcd being down or slow is `unavailable` (503,
 * retry later), not an internal error. SMMF errors thrown by the caller's own logic pass as they are.
 */
export async function etcdCall<T>(call: Promise<T>, ms = ETCD_CALL_MS): Promise<T> {
  try {
    return await withTimeout(call, ms);
  } catch (err) {
    if (err instanceof SmmfError) throw err;
    throw new SmmfError("unavailable", `etcd is unavailable now; retry later (${(err as Error)?.message ?? String(err)})`);
  }
}
