import { FastMetric, type FastMetricConfiguration, type MetricSnapshot } from "./FastMetric.js";
import type { LabelValue } from "./LabelledCells.js";

/**
 * A Prometheus counter for the request path: label values are given in label order, and an update allocates
 * nothing (prom-client's `inc(labels)` builds a key string every time). It registers with a prom-client
 * registry, which writes its exposition like any other metric's.
 */
export class FastCounter extends FastMetric<{ value: number }> {
  constructor(config: FastMetricConfiguration) {
    super(config, "counter", () => ({ value: 0 }));
  }

  /** Adds `value` (not negative) to the count of these label values. */
  inc(value: number, a?: LabelValue, b?: LabelValue, c?: LabelValue, d?: LabelValue): void {
    if (!(value >= 0) || !Number.isFinite(value)) throw new RangeError(`a counter only goes up, by a finite amount (got ${value})`);
    this.cell(a, b, c, d).value += value;
  }

  protected read(cell: { value: number }, labels: Record<string, string | number>, values: MetricSnapshot["values"]): void {
    values.push({ labels, value: cell.value });
  }
}
