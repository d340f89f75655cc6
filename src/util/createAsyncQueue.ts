/** A single-consumer queue that turns callbacks into an async iterable. */
export interface AsyncQueue<T> extends AsyncIterable<T> {
  push(item: T): void;
  end(): void;
  fail(err: unknown): void;
  /** Items pushed and not yet taken. */
  readonly size: number;
}

/**
 * With `deferWake`, the consumer is woken two event-loop turns later (setImmediate twice) instead of at once:
 * a producer that schedules its next step with setImmediate (node-llama-cpp's decode dispatch) goes first,
 * and the consumer's work then overlaps the next step instead of delaying it. Items pushed meanwhile are
 * taken together.
 */
export function createAsyncQueue<T>(options: { deferWake?: boolean } = {}): AsyncQueue<T> {
  const items: T[] = [];
  let done = false;
  let error: { err: unknown } | undefined;
  let wake: (() => void) | undefined;
  let scheduled = false;
  const wakeNow = () => {
    scheduled = false;
    const w = wake;
    wake = undefined;
    w?.();
  };
  const notify = () => {
    if (!options.deferWake) return wakeNow();
    if (scheduled || !wake) return;
    scheduled = true;
    setImmediate(() => setImmediate(wakeNow));
  };
  return {
    get size() {
      return items.length;
    },
    push(item) {
      if (done) return;
      items.push(item);
      notify();
    },
    end() {
      done = true;
      notify();
    },
    fail(err) {
      if (done) return;
      error = { err };
      done = true;
      notify();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (items.length > 0) {
          yield items.shift() as T;
          continue;
        }
        if (error) throw error.err;
        if (done) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}
