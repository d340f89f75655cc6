/** Rejects when `promise` has not settled within `ms`; a late result with a `cancel()` (an etcd watcher) is cancelled. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`no answer from etcd within ${ms} ms`));
      promise.then((late) => (late as { cancel?: () => Promise<void> } | undefined)?.cancel?.().catch(() => undefined), () => undefined);
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
