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

/**
 * What `FastCounter` and `FastHistogram` share: a name, help and label names, one cell per combination of
 * label values (found without allocating), registration with prom-client registries, and the reading of
 * cells into the snapshot a registry writes its exposition from.
 */
export abstract class FastMetric<C> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = "sum";
  protected readonly labelNames: readonly string[];
  protected readonly cells: LabelledCells<C>;

  constructor(
    config: FastMetricConfiguration,
    readonly type: MetricSnapshot["type"],
    makeCell: () => C,
  ) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames ?? [];
    this.cells = new LabelledCells(this.labelNames.length, makeCell);
    for (const registry of config.registers) registry.registerMetric(this as never);
  }

  async get(): Promise<MetricSnapshot> {
    const values: MetricSnapshot["values"] = [];
    for (const { values: labelValues, cell } of this.cells.entries) {
      const labels: Record<string, string | number> = {};
      for (let i = 0; i < this.labelNames.length; i++) labels[this.labelNames[i]] = labelValues[i];
      this.read(cell, labels, values);
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.cells.clear();
  }

  /** Drops the series whose labels `gone` picks (e.g. those of an instance that was unloaded); returns how many. */
  removeSeries(gone: (labels: Record<string, string | number>) => boolean): number {
    return this.cells.remove((values) => {
      const labels: Record<string, string | number> = {};
      for (let i = 0; i < this.labelNames.length; i++) labels[this.labelNames[i]] = values[i];
      return gone(labels);
    });
  }

  /** Adds a cell's lines to `values` (at scrape time). */
  protected abstract read(cell: C, labels: Record<string, string | number>, values: MetricSnapshot["values"]): void;

  protected cell(a?: LabelValue, b?: LabelValue, c?: LabelValue, d?: LabelValue): C {
    return this.cells.get(a, b, c, d);
  }
}
