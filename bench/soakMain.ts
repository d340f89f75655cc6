// `npm run bench:soak`: the TLS soak alone (TLS on vs off, 10 minutes by default). Flags: --minutes N,
// --rate N (requests/s per side), --warmup SECONDS; or BENCH_SOAK_MINUTES, BENCH_SOAK_RATE,
// BENCH_SOAK_WARMUP_S, BENCH_SOAK_STREAM_SHARE. Exits 1 when a side had errors or an RSS grew past 10%.
import { parseArgs } from "node:util";
import { benchSoak } from "./soak.js";

const { values } = parseArgs({ options: { minutes: { type: "string" }, rate: { type: "string" }, warmup: { type: "string" } } });
const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const result = await benchSoak({ minutes: num(values.minutes), rate: num(values.rate), warmupSeconds: num(values.warmup) });
process.exit(result.ok ? 0 : 1);
