/** A label value: numbers (e.g. HTTP statuses) are written as they print. */
export type LabelValue = string | number;

interface Entry<C> {
  values: LabelValue[];
  cell: C;
}

/**
 * The cells of a labelled metric, one per combination of label values (up to four labels), found by the
 * values in label order through nested maps: finding a cell that exists allocates nothing, unlike
 * prom-client, which builds a string key from a labels object on every update.
 */
export class LabelledCells<C> {
  private readonly root = new Map<LabelValue, unknown>();
  private readonly list: Entry<C>[] = [];

  constructor(
    private readonly labelCount: number,
    private readonly make: () => C,
  ) {
    if (labelCount > 4) throw new Error("at most four labels");
  }

  get(a: LabelValue = "", b: LabelValue = "", c: LabelValue = "", d: LabelValue = ""): C {
    const root = this.root;
    switch (this.labelCount) {
      case 0:
        return this.leaf(root, "", a, b, c, d);
      case 1:
        return this.leaf(root, a, a, b, c, d);
      case 2:
        return this.leaf(this.level(root, a), b, a, b, c, d);
      case 3:
        return this.leaf(this.level(this.level(root, a), b), c, a, b, c, d);
      default:
        return this.leaf(this.level(this.level(this.level(root, a), b), c), d, a, b, c, d);
    }
  }

  get entries(): readonly Entry<C>[] {
    return this.list;
  }

  clear(): void {
    this.root.clear();
    this.list.length = 0;
  }

  /** Drops the cells whose label values `gone` picks; returns how many. The others keep their cells. */
  remove(gone: (values: readonly LabelValue[]) => boolean): number {
    const kept = this.list.filter((e) => !gone(e.values));
    const removed = this.list.length - kept.length;
    if (removed === 0) return 0;
    // Rare (an instance went away): the maps are built again from the cells kept.
    this.clear();
    for (const e of kept) {
      let level = this.root;
      for (let i = 0; i < this.labelCount - 1; i++) level = this.level(level, e.values[i]);
      level.set(this.labelCount === 0 ? "" : e.values[this.labelCount - 1], e.cell);
      this.list.push(e);
    }
    return removed;
  }

  private level(from: Map<LabelValue, unknown>, key: LabelValue): Map<LabelValue, unknown> {
    let next = from.get(key) as Map<LabelValue, unknown> | undefined;
    if (!next) from.set(key, (next = new Map()));
    return next;
  }

  private leaf(level: Map<LabelValue, unknown>, key: LabelValue, a: LabelValue, b: LabelValue, c: LabelValue, d: LabelValue): C {
    let cell = level.get(key) as C | undefined;
    if (cell === undefined) {
      cell = this.make();
      level.set(key, cell);
      this.list.push({ values: [a, b, c, d].slice(0, this.labelCount), cell });
    }
    return cell;
  }
}
