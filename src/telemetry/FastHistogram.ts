import { FastMetric, type FastMetricConfiguration, type MetricSnapshot } from "./FastMetric.js";
import type { LabelValue } from "./LabelledCells.js";

interface Cell {
  /** Observations per bucket (not cumulative); the last is above every bound. */
  buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * A Prometheus histogram for the request path: label values are given in label order, and an observation
 * allocates nothing (prom-client's `observe(labels, v)` builds a key string every time). Its exposition is
 * prom-client's histogram's: cumulative `_bucket` lines with `le`, then `_sum` and `_count`.
 */
export class FastHistogram extends FastMetric<Cell> {
  private readonly bounds: readonly number[];

  constructor(config: FastMetricConfiguration & { buckets: readonly number[] }) {
    const bounds = [...config.buckets].sort((x, y) => x - y);
    super(config, "histogram", () => ({ buckets: new Float64Array(bounds.length + 1), sum: 0, count: 0 }));
    this.bounds = bounds;
  }

  observe(value: number, a?: LabelValue, b?: LabelValue, c?: LabelValue, d?: LabelValue): void {
    if (!Number.isFinite(value)) throw new RangeError(`an observation must be a finite number (got ${value})`);
    const cell = this.cell(a, b, c, d);
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]) i++;
    cell.buckets[i]++;
    cell.sum += value;
    cell.count++;
  }

  protected read(cell: Cell, labels: Record<string, string | number>, values: MetricSnapshot["values"]): void {
    const name = this.name;
    let cumulative = 0;
    this.bounds.forEach((bound, i) => {
      cumulative += cell.buckets[i];
      values.push({ labels: { le: bound, ...labels }, value: cumulative, metricName: `${name}_bucket` });
    });
    values.push({ labels: { le: "+Inf", ...labels }, value: cell.count, metricName: `${name}_bucket` });
    values.push({ labels, value: cell.sum, metricName: `${name}_sum` });
    values.push({ labels, value: cell.count, metricName: `${name}_count` });
  }
}
