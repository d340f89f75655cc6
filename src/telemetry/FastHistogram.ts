import { labelsOf, type FastMetricConfiguration, type MetricSnapshot } from "./FastCounter.js";
import { LabelledCells, type LabelValue } from "./LabelledCells.js";

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
export class FastHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly labelNames: readonly string[];
  private readonly bounds: readonly number[];
  private readonly cells: LabelledCells<Cell>;

  constructor(config: FastMetricConfiguration & { buckets: readonly number[] }) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames ?? [];
    this.bounds = [...config.buckets].sort((x, y) => x - y);
    this.cells = new LabelledCells(this.labelNames.length, () => ({ buckets: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 }));
    for (const registry of config.registers) registry.registerMetric(this as never);
  }

  observe(value: number, a?: LabelValue, b?: LabelValue, c?: LabelValue, d?: LabelValue): void {
    if (!Number.isFinite(value)) throw new RangeError(`an observation must be a finite number (got ${value})`);
    const cell = this.cells.get(a, b, c, d);
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]) i++;
    cell.buckets[i]++;
    cell.sum += value;
    cell.count++;
  }

  async get(): Promise<MetricSnapshot> {
    const values: MetricSnapshot["values"] = [];
    for (const { values: labelValues, cell } of this.cells.entries) {
      const labels = labelsOf(this.labelNames, labelValues);
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += cell.buckets[i];
        values.push({ labels: { le: bound, ...labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: "+Inf", ...labels }, value: cell.count, metricName: `${this.name}_bucket` });
      values.push({ labels, value: cell.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: cell.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.cells.clear();
  }
}
