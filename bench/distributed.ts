// The distributed part of `npm run bench`: gateway hop overhead (x-smmf-overhead-ms: gateway end to end
// less the worker's own time) at a fixed request rate, and how fast a dead worker leaves the gateway's
// pick set (connection loss) and etcd (lease expiry). Real etcd, worker and gateway processes on loopback.
import http from "node:http";
import { startSmmf, freePort, type SmmfProcess } from "../test/helpers/childProcess.js";
import { startEtcd } from "../test/helpers/startEtcd.js";
import { percentile } from "./stats.js";
import { checkTarget } from "./targets.js";

const RATE = Number(process.env.BENCH_RATE ?? 200);
const SECONDS = Number(process.env.BENCH_RATE_SECONDS ?? 5);
const LEASE_TTL = 3;


function request(port: number, agent: http.Agent, path: string, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: body ? "POST" : "GET", agent, headers: body ? { "content-type": "application/json" } : {} }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

export async function benchDistributed(modelPath: string): Promise<void> {
  const etcd = await startEtcd();
  const procs: SmmfProcess[] = [];
  try {
    const worker = (id: string) =>
      startSmmf(["worker", "--etcd", etcd.endpoints, "--model", `stories260K=${modelPath}`, "--gpu", "off", "--threads", "1", "--sequences", "8", "--lease-ttl", String(LEASE_TTL), "--worker-id", id, "--log-level", "error"]);
    procs.push(await worker("bench-w1"));
    const port = await freePort();
    procs.push(await startSmmf(["gateway", "--etcd", etcd.endpoints, "--port", String(port), "--log-level", "error"]));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    const body = JSON.stringify({ model: "stories260K", prompt: "Once upon a time", max_tokens: 2, temperature: 0 });
    for (let i = 0; i < 50; i++) await request(port, agent, "/v1/completions", body); // warm-up

    // Open loop: one request every 1/RATE s, whatever the answers do.
    const overheads: number[] = [];
    const latencies: number[] = [];
    let failed = 0;
    const pending: Promise<void>[] = [];
    const started = performance.now();
    const total = RATE * SECONDS;
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / RATE;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const t0 = performance.now();
      pending.push(
        request(port, agent, "/v1/completions", body).then(
          (res) => {
            latencies.push(performance.now() - t0);
            if (res.status !== 200) failed++;
            const overhead = Number(res.headers["x-smmf-overhead-ms"]);
            if (Number.isFinite(overhead)) overheads.push(overhead);
          },
          () => void failed++,
        ),
      );
    }
    await Promise.all(pending);
    const achieved = total / ((performance.now() - started) / 1000);
    console.log(`\ngateway hop overhead at ${RATE} requests/s for ${SECONDS} s (non-streaming, 2 tokens each; achieved ${achieved.toFixed(0)} requests/s, ${failed} failed)`);
    console.log(`  x-smmf-overhead-ms p50 ${percentile(overheads, 50).toFixed(3)}  p99 ${percentile(overheads, 99).toFixed(3)}   (targets: p50 <= 1, p99 <= 5)`);
    checkTarget("gateway hop overhead p50 ≤ 1 ms at the distributed bench's rate", percentile(overheads, 50) <= 1, `${percentile(overheads, 50).toFixed(3)} ms`);
    checkTarget("gateway hop overhead p99 ≤ 5 ms at the distributed bench's rate", percentile(overheads, 99) <= 5, `${percentile(overheads, 99).toFixed(3)} ms`);
    console.log(`  end-to-end latency ms p50 ${percentile(latencies, 50).toFixed(2)}  p99 ${percentile(latencies, 99).toFixed(2)}`);

    // Removal of a dead worker: from kill -9 to (a) not pickable in the gateway, (b) its key gone from etcd.
    const second = await worker("bench-w2");
    procs.push(second);
    const pickableOf = async (workerId: string) => {
      const res = await request(port, agent, "/api/v1/instances");
      const data = JSON.parse(res.body).data as { workerId: string; pickable: boolean }[];
      return data.some((i) => i.workerId === workerId && i.pickable);
    };
    const waitUntil = async (check: () => Promise<boolean>, limitMs: number) => {
      const t = performance.now();
      while (!(await check())) {
        if (performance.now() - t > limitMs) return NaN;
        await new Promise((r) => setTimeout(r, 2));
      }
      return performance.now() - t;
    };
    await waitUntil(() => pickableOf("bench-w2"), 10_000);
    for (let i = 0; i < 20; i++) await request(port, agent, "/v1/completions", body); // connections to both workers
    const killedAt = performance.now();
    second.child.kill("SIGKILL");
    const removed = await waitUntil(async () => !(await pickableOf("bench-w2")), 15_000);
    const keyGone = await waitUntil(async () => !(await etcd.etcdctl("get", "--prefix", "--keys-only", "/smmf/v1/instances/")).includes("bench-w2") && !(await etcd.etcdctl("get", "--prefix", "/smmf/v1/instances/")).includes("bench-w2"), 15_000);
    void killedAt;
    console.log(`\nworker killed with SIGKILL: out of the gateway's pick set after ${removed.toFixed(1)} ms (target <= 1000); its etcd key gone after ${(removed + keyGone).toFixed(0)} ms (lease TTL ${LEASE_TTL} s)`);
    checkTarget("a worker killed with SIGKILL leaves the gateway's pick set within 1 s", removed <= 1000, `${removed.toFixed(1)} ms`);
    agent.destroy();
  } finally {
    for (const p of procs) await p.kill().catch(() => undefined);
    await etcd.close();
  }
}
