// npm run rig: starts the multi-host rig (Linux network namespaces on a bridge: 3 etcd members, 2 controllers,
// 3 workers, 2 gateways, a client), prints every component's namespace and address, and waits for Ctrl-C, then
// tears everything down. `npm run rig -- --bench` runs the benchmark instead and exits (see rig/README.md).
// Needs root, iproute2, iptables, etcd (see rig/README.md).
import { runBench } from "./bench.js";
import { Rig } from "./Rig.js";

const args = process.argv.slice(2);
const log = (line: string) => process.stderr.write(`[rig] ${line}\n`);

function usage(): never {
  process.stdout.write(`Usage: npm run rig [-- --bench] [-- --slow-link] [-- --subnet 10.231.5]

  (no flag)     start the rig, print its components, wait for Ctrl-C, tear it down
  --bench       requests/s and p50/p99 through 2 gateways to 3 workers, and the time from a partition to the
                last gateway dropping the instance; prints the figures and exits
  --slow-link   put a delaying, connection-dropping relay between gw1 and wrk3 (plain until told otherwise)
  --subnet S    the /24 to use, as its first three octets (default: the first free one of 10.231.0-99)
`);
  process.exit(2);
}

if (args.includes("--help") || args.includes("-h")) usage();
const subnetAt = args.indexOf("--subnet");
const subnet = subnetAt >= 0 ? args[subnetAt + 1] : undefined;
if (subnetAt >= 0 && !/^\d+\.\d+\.\d+$/.test(subnet ?? "")) usage();

let rig: Rig | undefined;
let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    await rig?.close().catch((err: unknown) => log(`teardown: ${String(err)}`));
  }
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(130));
process.on("SIGTERM", () => void shutdown(143));

try {
  if (args.includes("--bench")) {
    await runBench({ log, subnet });
    process.exit(0);
  }
  const started = Date.now();
  rig = await Rig.start({ log, subnet, slowLink: args.includes("--slow-link") ? { gateway: "gw1", worker: "wrk3" } : undefined });
  const gw = rig.component("gw1");
  process.stdout.write(`\nSMMF rig up in ${((Date.now() - started) / 1000).toFixed(1)} s, on ${rig.subnet}.0/24 (bridge ${rig.bridge}):\n\n${rig.describe()}\n
etcd endpoints: ${rig.etcdEndpoints}
admin API key:  ${rig.apiKey}
temporary dir:  ${rig.dir}

Try, from the client namespace:
  ip netns exec ${rig.component("client").netns} curl -s ${gw.url}/v1/completions -H 'authorization: Bearer ${rig.apiKey}' \\
    -H 'content-type: application/json' -d '{"model":"stories260K","prompt":"Once upon a time","max_tokens":16}'
  ip netns exec ${rig.component("client").netns} curl -s ${gw.url}/api/v1/instances -H 'authorization: Bearer ${rig.apiKey}'
Cut a worker off: ip netns exec ${rig.component("wrk1").netns} iptables -A INPUT ! -i lo -j DROP   (heal: iptables -F)

Ctrl-C tears it all down.
`);
  await new Promise(() => undefined);
} catch (err) {
  log(String((err as Error)?.stack ?? err));
  await shutdown(1);
}
