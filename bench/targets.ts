// The benchmarks' targets, checked where they are printed: each says "target met" or "TARGET MISSED" beside its
// figure, and `finishTargets()` (at the end of `npm run bench` and of each `npm run bench:*`) lists the missed
// ones and gives the exit status: 1 when one was missed, 0 otherwise. BENCH_EXPLORE=1 (or `--explore`) keeps
// the status 0 for exploration: the figures and the verdicts are printed all the same.

const missed: string[] = [];
let checked = 0;

/** Records one target: `ok` whether it holds, `figure` what was measured (printed either way). */
export function checkTarget(name: string, ok: boolean, figure: string): void {
  checked++;
  if (!ok) missed.push(`${name}: ${figure}`);
  console.log(`  ${ok ? "target met" : "TARGET MISSED"}: ${name} (${figure})`);
}

/** Prints the verdict of every target checked so far; returns the exit status. */
export function finishTargets(): number {
  const explore = process.env.BENCH_EXPLORE === "1" || process.argv.includes("--explore");
  if (checked === 0) return 0;
  if (missed.length === 0) {
    console.log(`\nall ${checked} targets met`);
    return 0;
  }
  console.log(`\n${missed.length} of ${checked} targets missed:`);
  for (const m of missed) console.log(`  - ${m}`);
  if (explore) console.log("(BENCH_EXPLORE: exit status 0 all the same)");
  return explore ? 0 : 1;
}
