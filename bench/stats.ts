/** The p-th percentile (nearest rank) of `values`; NaN when there are none. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** percentile(a, p) / percentile(b, p) with its 90% bootstrap interval (how far the ratio itself is noise). */
export function percentileRatio(a: number[], b: number[], p: number, resamples = 1000): string {
  if (a.length === 0 || b.length === 0) return "-";
  const draw = (v: number[]) => Array.from({ length: v.length }, () => v[Math.floor(Math.random() * v.length)]);
  const ratios = Array.from({ length: resamples }, () => percentile(draw(a), p) / percentile(draw(b), p)).sort((x, y) => x - y);
  return `${(percentile(a, p) / percentile(b, p)).toFixed(3)} (${ratios[Math.floor(resamples * 0.05)].toFixed(2)}–${ratios[Math.floor(resamples * 0.95)].toFixed(2)})`;
}
