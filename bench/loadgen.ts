// The load generator of `npm run bench:gateway`, in a process of its own (so that it does not share an event
// loop with what it measures), one run as the argument (JSON) says; prints the result as one JSON line. It
// collects each answer's `x-smmf-overhead-ms` (what the gateway added to the worker's time) and counts answers
// that are not 200 as errors. Saturation (no rate): autocannon, closed loop, each connection sending its next
// request when the last is answered. A fixed rate: an open loop paced here, requests evenly spaced (autocannon's
// own rate limit sends each connection's share of a second in a burst at the start of the second, which
// measures the bursts' queueing, not the rate), over a keep-alive pool of `connections`.
import http from "node:http";
import autocannon from "autocannon";

export interface LoadSpec {
  url: string;
  path: string;
  body: string;
  connections: number;
  durationS: number;
  /** Requests per second overall; none: as fast as the connections go (saturation). */
  rate?: number;
  headers?: Record<string, string>;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  perSecond: number;
  errors: number;
  /** Connection errors and timeouts, apart from answers that were not 200. */
  socketErrors: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  overheadP50Ms?: number;
  overheadP99Ms?: number;
  firstError?: string;
}

function percentile(sorted: number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Open loop: `rate` requests a second, evenly spaced, for `durationS`; latency from when each was due. */
async function paced(spec: LoadSpec & { rate: number }): Promise<LoadResult> {
  const target = new URL(spec.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.connections });
  const body = Buffer.from(spec.body);
  const latencies: number[] = [];
  const overheads: number[] = [];
  let errors = 0;
  let socketErrors = 0;
  let firstError: string | undefined;
  const total = Math.round(spec.rate * spec.durationS);
  const started = performance.now();
  let sent = 0;
  let done = 0;
  await new Promise<void>((finished) => {
    const send = (due: number) => {
      const req = http.request({ host: target.hostname, port: target.port, path: spec.path, method: "POST", agent, headers: { "content-type": "application/json", "content-length": body.length, ...spec.headers } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          latencies.push(performance.now() - due);
          if (res.statusCode !== 200) {
            errors++;
            firstError ??= `HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 200)}`;
          } else {
            const overhead = res.headers["x-smmf-overhead-ms"];
            if (typeof overhead === "string") overheads.push(Number(overhead));
          }
          if (++done === total) finished();
        });
      });
      req.on("error", (err) => {
        errors++;
        socketErrors++;
        firstError ??= err.message;
        if (++done === total) finished();
      });
      req.end(body);
    };
    const tick = () => {
      const now = performance.now();
      // Every request due by now goes out (a late timer sends the ones it missed at once, each timed from when it was due).
      while (sent < total && started + (sent * 1000) / spec.rate <= now) send(started + (sent++ * 1000) / spec.rate);
      if (sent < total) setTimeout(tick, Math.max(0, started + (sent * 1000) / spec.rate - performance.now()));
    };
    tick();
  });
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  overheads.sort((a, b) => a - b);
  return {
    requests: done,
    seconds,
    perSecond: done / seconds,
    errors,
    socketErrors,
    latencyP50Ms: percentile(latencies, 50) ?? 0,
    latencyP99Ms: percentile(latencies, 99) ?? 0,
    overheadP50Ms: percentile(overheads, 50),
    overheadP99Ms: percentile(overheads, 99),
    firstError,
  };
}

const spec = JSON.parse(process.argv[2]) as LoadSpec;
if (spec.rate) {
  process.stdout.write(`${JSON.stringify(await paced(spec as LoadSpec & { rate: number }))}\n`);
  process.exit(0);
}
const overheads: number[] = [];
let badStatus = 0;
let firstError: string | undefined;
const started = performance.now();
const result = await autocannon({
  url: spec.url,
  connections: spec.connections,
  duration: spec.durationS,
  timeout: 30,
  requests: [
    {
      method: "POST",
      path: spec.path,
      body: spec.body,
      headers: { "content-type": "application/json", ...spec.headers },
      onResponse: (status: number, body: string, _context: unknown, headers?: Record<string, string>) => {
        if (status !== 200) {
          badStatus++;
          firstError ??= `HTTP ${status}: ${String(body).slice(0, 200)}`;
          return;
        }
        const overhead = headers?.["x-smmf-overhead-ms"];
        if (overhead !== undefined) overheads.push(Number(overhead));
      },
    } as autocannon.Request,
  ],
});
const seconds = (performance.now() - started) / 1000;
overheads.sort((a, b) => a - b);
const out: LoadResult = {
  requests: result.requests.total,
  seconds,
  perSecond: result.requests.total / seconds,
  errors: badStatus + result.errors + result.timeouts,
  socketErrors: result.errors + result.timeouts,
  latencyP50Ms: result.latency.p50,
  latencyP99Ms: result.latency.p99,
  overheadP50Ms: percentile(overheads, 50),
  overheadP99Ms: percentile(overheads, 99),
  firstError,
};
process.stdout.write(`${JSON.stringify(out)}\n`);
