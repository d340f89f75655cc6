import type { AnyResponse } from "./sse.js";

/** Runs `work` with a signal that aborts when the client goes away before the answer is done (the response closes). */
export async function whileConnected<T>(res: AnyResponse, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const onClose = () => abort.abort();
  res.once("close", onClose);
  try {
    return await work(abort.signal);
  } finally {
    res.off("close", onClose);
  }
}
