export interface EjectionOptions {
  /** Consecutive failures that eject an instance. */
  consecutiveFailures: number;
  /** First cool-down; each ejection in a row doubles it, up to maxMs. */
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_EJECTION: EjectionOptions = { consecutiveFailures: 2, baseMs: 1_000, maxMs: 30_000 };

interface Record {
  failures: number;
  ejections: number;
  until: number;
}

/** Outlier ejection: instances that keep failing sit out a cool-down that grows while they keep failing. */
export class InstanceHealth {
  private readonly records = new Map<string, Record>();
  /** Ejections so far, for metrics and tests. */
  ejectionCount = 0;
  /** Hears of each ejection. */
  onEjected: (instanceId: string) => void = () => undefined;

  constructor(private readonly options: EjectionOptions = DEFAULT_EJECTION, private readonly now: () => number = Date.now) {}

  isEjected(instanceId: string): boolean {
    const r = this.records.get(instanceId);
    return r !== undefined && r.until > this.now();
  }

  recordSuccess(instanceId: string): void {
    const r = this.records.get(instanceId);
    if (!r) return;
    r.failures = 0;
    if (r.until <= this.now()) this.records.delete(instanceId);
  }

  recordFailure(instanceId: string): void {
    const r = this.record(instanceId);
    r.failures++;
    if (r.failures >= this.options.consecutiveFailures) this.eject(instanceId);
  }

  /** Ejects at once (e.g. its worker's connection closed). */
  eject(instanceId: string): void {
    const r = this.record(instanceId);
    if (r.until > this.now()) return;
    const ms = Math.min(this.options.maxMs, this.options.baseMs * 2 ** r.ejections);
    r.ejections++;
    r.failures = 0;
    this.onEjected(instanceId);
    r.until = this.now() + ms;
    this.ejectionCount++;
  }

  /** Lifts an ejection whose cause is gone (its worker's lost connection is back): the instance is picked again at once. */
  readmit(instanceId: string): void {
    const r = this.records.get(instanceId);
    if (!r) return;
    r.until = 0;
    r.failures = 0;
  }

  /** Forgets instances that are gone. */
  retain(ids: Set<string>): void {
    for (const id of this.records.keys()) if (!ids.has(id)) this.records.delete(id);
  }

  private record(instanceId: string): Record {
    let r = this.records.get(instanceId);
    if (!r) {
      r = { failures: 0, ejections: 0, until: 0 };
      this.records.set(instanceId, r);
    }
    return r;
  }
}
