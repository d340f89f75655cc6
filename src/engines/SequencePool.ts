import { SmmfError } from "../errors/SmmfError.js";

/**
 * Hands out a fixed set of items (context sequences) to callers, queueing the rest in a bounded FIFO. A caller
 * may rank the free items (`score`: how many of its prompt's tokens an item's cache holds); the best goes, and
 * among equals the least recently used, so the items that get overwritten are the ones idle longest. An item
 * is only ever held by one caller at a time.
 */
export class SequencePool<T> {
  /** Free items, least recently released first. */
  private readonly free: T[];
  private readonly waiters: { resolve: (item: T) => void; reject: (err: unknown) => void; signal: AbortSignal; onAbort: () => void }[] = [];
  private readonly size: number;

  constructor(items: T[], private readonly maxQueue: number) {
    this.free = [...items];
    this.size = items.length;
  }

  /** Items in use now. */
  inUse(): number {
    return this.size - this.free.length;
  }

  queued(): number {
    return this.waiters.length;
  }

  acquire(signal: AbortSignal, score?: (item: T) => number): Promise<T> {
    if (signal.aborted) return Promise.reject(new SmmfError("cancelled", "request cancelled"));
    if (this.free.length > 0) {
      let best = 0;
      if (score) {
        let bestScore = -Infinity;
        for (let i = 0; i < this.free.length; i++) {
          const s = score(this.free[i]);
          if (s > bestScore) [best, bestScore] = [i, s];
        }
      }
      return Promise.resolve(this.free.splice(best, 1)[0]);
    }
    if (this.waiters.length >= this.maxQueue) {
      return Promise.reject(new SmmfError("resource_exhausted", "the instance is at capacity; retry later"));
    }
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new SmmfError("cancelled", "request cancelled"));
        },
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  release(item: T): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.signal.removeEventListener("abort", waiter.onAbort);
      waiter.resolve(item);
    } else {
      this.free.push(item);
    }
  }

  /** Rejects every waiter (on close). */
  rejectAll(err: unknown): void {
    for (const waiter of this.waiters.splice(0)) {
      waiter.signal.removeEventListener("abort", waiter.onAbort);
      waiter.reject(err);
    }
  }
}
