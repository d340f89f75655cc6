import { SmmfError } from "../errors/SmmfError.js";

/** Hands out a fixed set of items (context sequences) to callers, queueing the rest in a bounded FIFO. */
export class SequencePool<T> {
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

  acquire(signal: AbortSignal): Promise<T> {
    if (signal.aborted) return Promise.reject(new SmmfError("cancelled", "request cancelled"));
    const item = this.free.pop();
    if (item !== undefined) return Promise.resolve(item);
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
