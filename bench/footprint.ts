// Start-up time and idle memory, compiled (dist/, what bin/smmf.js runs) against the TypeScript sources run
// through tsx (what bin/smmf.js ran before there was a build), side by side: `smmf --help` wall time, and the
// resident memory of an idle gateway on etcd. Targets: --help under 0.5 s, an idle gateway under 80 MB.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startEtcd } from "../test/helpers/startEtcd.js";
import { percentile } from "./stats.js";
import { checkTarget } from "./targets.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const RUNS = Number(process.env.BENCH_FOOTPRINT_RUNS ?? 7);

/** The two ways to run the CLI: argv before the command's own arguments. */
const WAYS = {
  "compiled (dist/)": [join(root, "dist", "cli", "main.js")],
  "sources through tsx": ["--import", "tsx", join(root, "src", "cli", "main.ts")],
} as const;

function helpMs(argv: readonly string[]): number {
  const started = performance.now();
  const r = spawnSync(process.execPath, [...argv, "--help"], { cwd: root, stdio: "ignore" });
  if (r.status !== 0) throw new Error(`smmf --help exited with ${r.status}`);
  return performance.now() - started;
}

function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

let gateways = 0;

interface Footprint {
  early: number;
  idle: number;
  /** With `use`: 1 s after a read of the request log (its thread started), and 35 s later (the thread stopped while idle). */
  used?: number;
  idleAgain?: number;
}

/**
 * An idle gateway's resident memory, 3 s after it said it serves and after 30 s (by then V8's memory reducer
 * has shrunk the heap it grew while loading its modules). With `use`, then a request-log read, which starts the
 * telemetry thread, and the memory 1 s and 35 s later (the thread stops after 30 s idle).
 */
async function idleGatewayMb(argv: readonly string[], etcd: string, extra: readonly string[] = [], use = false): Promise<Footprint> {
  const child = spawn(process.execPath, [...argv, "gateway", "--etcd", etcd, "--port", "0", "--log-level", "error", "--data-dir", join(root, ".smmf", `bench-footprint-${++gateways}`), ...extra], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
  try {
    const url = await new Promise<string>((ok, fail) => {
      let out = "";
      child.stdout!.on("data", (c: Buffer) => {
        out += c.toString();
        const m = /serving at (http:\/\/\S+)\/v1/.exec(out);
        if (m) ok(m[1]);
      });
      child.once("exit", (code) => fail(new Error(`gateway exited with ${code}`)));
    });
    await new Promise((r) => setTimeout(r, 3_000));
    const early = rssMb(child.pid!);
    await new Promise((r) => setTimeout(r, 27_000));
    const idle = rssMb(child.pid!);
    if (!use) return { early, idle };
    const res = await fetch(`${url}/api/v1/requests?limit=1`);
    if (res.status !== 200) throw new Error(`GET /api/v1/requests answered ${res.status}`);
    await new Promise((r) => setTimeout(r, 1_000));
    const used = rssMb(child.pid!);
    await new Promise((r) => setTimeout(r, 35_000));
    return { early, idle, used, idleAgain: rssMb(child.pid!) };
  } finally {
    child.kill("SIGKILL");
  }
}

export async function benchFootprint(): Promise<void> {
  const build = spawnSync(process.execPath, [join(root, "scripts", "build.mjs"), "--quiet"], { cwd: root, stdio: "inherit" });
  if (build.status !== 0) throw new Error("npm run build failed");
  console.log(`\n== Start-up and footprint: smmf --help (median of ${RUNS}), an idle gateway's RSS (etcd, no instances)`);
  const help: Record<string, number[]> = {};
  for (let i = 0; i < RUNS; i++) for (const [way, argv] of Object.entries(WAYS)) (help[way] ??= []).push(helpMs(argv));
  const etcd = await startEtcd();
  const rss: Record<string, Footprint> = {};
  let noLog: Footprint;
  try {
    // The two ways side by side (at once: the same machine state), then the compiled one without its request log.
    const ways = Object.entries(WAYS);
    const measured = await Promise.all(ways.map(([way, argv]) => idleGatewayMb(argv, etcd.endpoints, [], way === "compiled (dist/)")));
    ways.forEach(([way], i) => (rss[way] = measured[i]));
    noLog = await idleGatewayMb(WAYS["compiled (dist/)"], etcd.endpoints, ["--request-log", "off"]);
  } finally {
    await etcd.close();
  }
  console.log("way                     --help p50 ms   gateway RSS MB at 3 s   after 30 s idle");
  for (const way of Object.keys(WAYS)) console.log(`${way.padEnd(24)}${percentile(help[way], 50).toFixed(0).padStart(13)}${rss[way].early.toFixed(0).padStart(24)}${rss[way].idle.toFixed(0).padStart(18)}`);
  console.log(`${"compiled, no request log".padEnd(24)}${"".padStart(13)}${noLog.early.toFixed(0).padStart(24)}${noLog.idle.toFixed(0).padStart(18)}`);
  const [dist, tsx] = Object.keys(WAYS);
  console.log(`compiled, after a request-log read: ${rss[dist].used!.toFixed(0)} MB 1 s later (telemetry thread running), ${rss[dist].idleAgain!.toFixed(0)} MB 35 s later (stopped after 30 s idle)`);
  console.log(`compiled / tsx: --help ${(percentile(help[dist], 50) / percentile(help[tsx], 50)).toFixed(2)}, RSS after 30 s ${(rss[dist].idle / rss[tsx].idle).toFixed(2)}`);
  console.log("targets: --help < 500 ms, idle gateway < 80 MB (compiled)");
  checkTarget("smmf --help < 500 ms (compiled)", percentile(help[dist], 50) < 500, `${percentile(help[dist], 50).toFixed(0)} ms`);
  checkTarget("idle gateway < 80 MB RSS (compiled)", rss[dist].idle < 80, `${rss[dist].idle.toFixed(0)} MB`);
}
