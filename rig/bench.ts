import { cpus } from "node:os";
import { percentile, summarize } from "./load.js";
import { metricValue, untilDropped, untilPickable } from "./observe.js";
import { Rig } from "./Rig.js";

export interface BenchOptions {
  log: (line: string) => void;
  subnet?: string;
  /** Seconds of the throughput run (default 15). */
  seconds?: number;
  /** Requests open at once in the throughput run (default 32). */
  concurrency?: number;
  /** Tokens per completion (default 16). */
  maxTokens?: number;
  /** Partition rounds per condition (idle, under load); default 3 (one per worker). */
  rounds?: number;
  /** Where the report goes (default stdout). */
  out?: (text: string) => void;
}

const fmt = (n: number) => (Number.isFinite(n) ? `${Math.round(n)} ms` : "-");

/**
 * `npm run rig -- --bench`: on a fresh rig, (1) requests/s and p50/p99 latency of completions sent from the
 * client namespace round-robin to the 2 gateways, which spread them over the 3 workers (p2c); (2) the time
 * from cutting a worker off from everything (DROP rules in its namespace) to the last gateway dropping its
 * instance from its pick set, idle and under load, once per worker each. Prints the figures.
 */
export async function runBench(options: BenchOptions): Promise<void> {
  const out = options.out ?? ((text: string) => process.stdout.write(text));
  const seconds = options.seconds ?? 15;
  const concurrency = options.concurrency ?? 32;
  const maxTokens = options.maxTokens ?? 16;
  const rounds = options.rounds ?? 3;
  const started = Date.now();
  const rig = await Rig.start({ log: options.log, subnet: options.subnet });
  try {
    const startupS = (Date.now() - started) / 1000;
    options.log("warming up");
    await rig.load({ requests: 64, concurrency: 16, maxTokens, stream: false }).records;

    // Ejections during the throughput runs: a healthy worker taken out (a PING unanswered, failures) would show here.
    const ejections = async () => (await Promise.all(rig.gateways.map(async (g) => metricValue(await rig.metrics(g.name), "smmf_gateway_ejections_total")))).reduce((a, b) => a + b, 0);
    const ejectionsBefore = await ejections();
    options.log(`throughput: ${seconds} s, ${concurrency} concurrent, ${maxTokens} tokens each`);
    const records = await rig.load({ durationMs: seconds * 1000, concurrency, maxTokens, stream: false, timeoutMs: 60_000 }).records;
    const s = summarize(records);
    const streamRecords = await rig.load({ durationMs: Math.max(5, seconds / 3) * 1000, concurrency, maxTokens, stream: true, timeoutMs: 60_000 }).records;
    const st = summarize(streamRecords);
    const ttft = streamRecords.filter((r) => r.ok && r.ttftMs !== undefined).map((r) => r.ttftMs!).sort((a, b) => a - b);
    const throughputEjections = (await ejections()) - ejectionsBefore;

    const workers = rig.workers.map((w) => w.name);
    const partitions: { round: number; worker: string; load: string; at: Record<string, number>; last: number; backMs: number }[] = [];
    for (const condition of ["idle", "under load"] as const) {
      for (let round = 0; round < rounds; round++) {
        const worker = workers[round % workers.length];
        const id = await rig.instanceOf(worker);
        const load = condition === "under load" ? rig.load({ requests: 1_000_000, concurrency: 16, maxTokens, stream: true, timeoutMs: 60_000 }) : undefined;
        if (load) await load.after(32);
        options.log(`partition ${condition}: cutting ${worker} off`);
        const cutAt = Date.now();
        await rig.cut(worker);
        const dropped = await untilDropped(rig, id, { timeoutMs: 30_000, intervalMs: 10 });
        await load?.stop();
        const failed = load ? summarize(await load.records).failed : 0;
        const healedAt = Date.now();
        await rig.heal(worker);
        const back = await untilPickable(rig, id, 60_000);
        partitions.push({
          round: round + 1,
          worker,
          load: condition + (load ? ` (${failed} failed)` : ""),
          at: Object.fromEntries(Object.entries(dropped.at).map(([g, t]) => [g, t - cutAt])),
          last: dropped.last - cutAt,
          backMs: back - healedAt,
        });
      }
    }

    const gateways = rig.gateways.map((g) => g.name);
    const lines: string[] = [];
    lines.push(``);
    lines.push(`SMMF multi-host rig benchmark — ${new Date().toISOString()}`);
    lines.push(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), node ${process.version}; rig up in ${startupS.toFixed(1)} s`);
    lines.push(`rig: 3 etcd members, 2 controllers, 3 workers (stories260K, 8 sequences, 1 thread each), 2 gateways (p2c), each in its own network namespace on ${rig.subnet}.0/24; lease TTL ${rig.leaseTtl} s`);
    lines.push(``);
    lines.push(`Throughput: completions of ${maxTokens} tokens, ${concurrency} at a time, round-robin over the 2 gateways, from the client namespace`);
    lines.push(`  non-streaming, ${s.seconds.toFixed(1)} s: ${s.requests} requests, ${s.failed} failed; ${s.requestsPerSecond.toFixed(1)} requests/s; latency p50 ${fmt(s.p50Ms)}, p90 ${fmt(s.p90Ms)}, p99 ${fmt(s.p99Ms)}`);
    lines.push(`    per instance: ${Object.entries(s.byInstance).map(([id, v]) => `${id} ${v.requests}`).join(", ")}`);
    lines.push(`  streaming, ${st.seconds.toFixed(1)} s: ${st.requests} requests, ${st.failed} failed; ${st.requestsPerSecond.toFixed(1)} requests/s; latency p50 ${fmt(st.p50Ms)}, p99 ${fmt(st.p99Ms)}; time to first token p50 ${fmt(percentile(ttft, 50))}, p99 ${fmt(percentile(ttft, 99))}`);
    lines.push(`  instances ejected by a gateway meanwhile: ${throughputEjections}`);
    lines.push(``);
    lines.push(`Partition → last gateway drops the instance (the worker cut off from everything by DROP rules; gateways polled every 10 ms)`);
    const head = ["round", "worker", "load", ...gateways, "last", "back after heal"];
    const rows = partitions.map((p) => [String(p.round), p.worker, p.load, ...gateways.map((g) => fmt(p.at[g])), fmt(p.last), fmt(p.backMs)]);
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    for (const row of [head, ...rows]) lines.push(`  ${row.map((c, i) => c.padEnd(widths[i])).join("  ")}`);
    for (const condition of ["idle", "under load"]) {
      const lasts = partitions.filter((p) => p.load.startsWith(condition)).map((p) => p.last).sort((a, b) => a - b);
      lines.push(`  ${condition}: last gateway dropped it after ${fmt(percentile(lasts, 50))} (median), ${fmt(lasts[lasts.length - 1])} (max)`);
    }
    lines.push(``);
    out(`${lines.join("\n")}\n`);
  } finally {
    await rig.close();
  }
}
