// Polling with a deadline, for state that announces no event of its own (the tests' helpers and the rig).
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export { sleep };

/** Polls `probe` until it returns something other than undefined/false; throws naming `what` on timeout. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message ?? String(lastError)})` : ""}`);
    }
    await sleep(intervalMs);
  }
}
