import { parseArgs } from "node:util";
import { formatReport, runFuzz } from "./runFuzz.js";

/**
 * `npm run fuzz [-- --count N --seed S --concurrency C --only CATEGORY,... --cases I,J,...]`: sends N (default 10,000) seeded,
 * malformed or hostile inputs to a real `smmf serve` and exits non-zero on any failure (a 5xx the route does
 * not document, a dropped answer, a crash, an authorization bypass, a failed health check, or RSS not back
 * within 10% of its post-warm-up value).
 */
const { values } = parseArgs({
  options: {
    count: { type: "string", default: "10000" },
    seed: { type: "string", default: "14" },
    concurrency: { type: "string", default: "8" },
    "batch-size": { type: "string", default: "250" },
    warmup: { type: "string" },
    quiet: { type: "boolean", default: false },
    only: { type: "string" },
    cases: { type: "string" },
  },
});

const report = await runFuzz({
  seed: Number(values.seed),
  count: Number(values.count),
  concurrency: Number(values.concurrency),
  batchSize: Number(values["batch-size"]),
  // A replay of a few cases needs no warm-up.
  warmup: Number(values.warmup ?? (values.cases ? 0 : 300)),
  only: values.only?.split(","),
  indices: values.cases?.split(",").map(Number),
  log: values.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
});
process.stdout.write(`${formatReport(report)}\n`);
process.exit(report.failures.length > 0 ? 1 : 0);
