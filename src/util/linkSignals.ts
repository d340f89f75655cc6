/**
 * An AbortController that also aborts when any of its input signals does. A call that ends normally calls
 * `unlink()` instead of `abort()`: it stops listening to the inputs without firing anything (no abort event,
 * no error object), so nothing downstream mistakes a completion for a cancellation. Aborting unlinks too.
 * It listens as an EventListener object (no closure per input).
 */
export class LinkedAbortController extends AbortController {
  private inputs: AbortSignal[] = [];

  constructor(signals: readonly (AbortSignal | undefined)[]) {
    super();
    for (const signal of signals) {
      if (!signal) continue;
      if (signal.aborted) {
        this.abort(signal.reason);
        break;
      }
      signal.addEventListener("abort", this, { once: true });
      this.inputs.push(signal);
    }
  }

  /** An input aborted: abort with its reason. */
  handleEvent(event: Event): void {
    this.abort((event.target as AbortSignal).reason);
  }

  override abort(reason?: unknown): void {
    this.unlink();
    super.abort(reason);
  }

  /** Stops following the inputs, without aborting. */
  unlink(): void {
    for (const signal of this.inputs) signal.removeEventListener("abort", this);
    this.inputs.length = 0;
  }
}

/** An AbortController that also aborts when any of the given signals does (see LinkedAbortController). */
export function linkSignals(...signals: (AbortSignal | undefined)[]): LinkedAbortController {
  return new LinkedAbortController(signals);
}
