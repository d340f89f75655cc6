/**
 * A set shared by every copy of this module in the process (a global under `key`: vitest may evaluate a
 * helper twice), whose members `onExit` takes care of, synchronously, when the process exits, each on its
 * own (one that throws does not stop the others). The exit handler is registered when the set is first made.
 */
export function exitSet<T>(key: string, onExit: (item: T) => void): Set<T> {
  const g = globalThis as unknown as Record<symbol, Set<T> | undefined>;
  const symbol = Symbol.for(key);
  let set = g[symbol];
  if (!set) {
    const created = new Set<T>();
    set = created;
    g[symbol] = created;
    const handler = () => {
      for (const item of created) {
        try {
          onExit(item);
        } catch {
          // best effort: the process is going away
        }
      }
    };
    // Named, so that the test isolation check (test/setup/isolation.ts) knows it: one per process by design.
    Object.defineProperty(handler, "name", { value: `exitSet:${key}` });
    process.on("exit", handler);
  }
  return set;
}
