import type { Registry } from "prom-client";
import { LabelledCells, type LabelValue } from "./LabelledCells.js";

export interface FastMetricConfiguration {
  name: string;
  help: string;
  labelNames?: readonly string[];
  registers: Registry[];
}

/** What a prom-client registry reads of a metric to write its exposition (prom-client's own metrics give the same). */
export interface MetricSnapshot {
  name: string;
  help: string;
  type: "counter" | "histogram";
  aggregator: "sum";
  values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
}

/** Label values as a labels object, for the exposition (made at scrape time only). */
export function labelsOf(names: readonly string[], values: readonly LabelValue[]): Record<string, string | number> {
  const labels: Record<string, string | number> = {};
  for (let i = 0; i < names.length; i++) labels[names[i]] = values[i];
  return labels;
}

/**
 * A Prometheus counter for the request path: label values are given in label order, and an update allocates
 * nothing (prom-client's `inc(labels)` builds a key string every time). It registers with a prom-client
 * registry, which writes its exposition like any other metric's.
 */
export class FastCounter {
  readonly name: string;
  readonly help: string;
  readonly type = "counter";
  readonly aggregator = "sum";
  private readonly labelNames: readonly string[];
  private readonly cells: LabelledCells<{ value: number }>;

  constructor(config: FastMetricConfiguration) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames ?? [];
    this.cells = new LabelledCells(this.labelNames.length, () => ({ value: 0 }));
    for (const registry of config.registers) registry.registerMetric(this as never);
  }

  /** Adds `value` (not negative) to the count of these label values. */
  inc(value: number, a?: LabelValue, b?: LabelValue, c?: LabelValue, d?: LabelValue): void {
    if (!(value >= 0) || !Number.isFinite(value)) throw new RangeError(`a counter only goes up, by a finite amount (got ${value})`);
    this.cells.get(a, b, c, d).value += value;
  }

  async get(): Promise<MetricSnapshot> {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.cells.entries.map(({ values, cell }) => ({ labels: labelsOf(this.labelNames, values), value: cell.value })),
    };
  }

  reset(): void {
    this.cells.clear();
  }
}
