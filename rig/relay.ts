// The rig's slow, lossy link: a TcpRelay in its own namespace (`ip netns exec <rig>-relay node --import tsx
// rig/relay.ts --listen HOST:PORT --target HOST:PORT`). A gateway's namespace sends its connections to one
// worker here (an iptables DNAT rule), and the relay passes them on to the worker.
// Control on stdin, one JSON object per line, each answered on stdout with one line:
//   {"set": {"delayMs": 40, "jitterMs": 20, "dropMeanMs": 3000, "refuseRate": 0}}  →  relay settings {...}
//   {"stats": true}                                                                 →  relay stats {...}
// and says `relay dropped N` whenever it resets a connection on purpose.
import { createInterface } from "node:readline";
import { TcpRelay } from "./TcpRelay.js";

function hostPort(name: string): { host: string; port: number } {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? process.argv[i + 1] : undefined;
  const m = value ? /^([\d.]+):(\d+)$/.exec(value) : null;
  if (!m) throw new Error(`rig relay: --${name} HOST:PORT is required`);
  return { host: m[1], port: Number(m[2]) };
}

const listen = hostPort("listen");
const relay = new TcpRelay(hostPort("target"));
relay.onDrop = () => process.stdout.write(`relay dropped ${relay.stats.dropped}\n`);
await relay.listen(listen.host, listen.port);
process.stdout.write(`relay ready on ${listen.host}:${listen.port}\n`);

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  try {
    const command = JSON.parse(line) as { set?: Record<string, number>; stats?: boolean };
    if (command.set) process.stdout.write(`relay settings ${JSON.stringify(relay.set(command.set))}\n`);
    if (command.stats) process.stdout.write(`relay stats ${JSON.stringify(relay.stats)}\n`);
  } catch (err) {
    process.stdout.write(`relay error ${JSON.stringify(String(err))}\n`);
  }
});
// stdin closes when the rig's process is gone: end with it.
lines.on("close", () => process.exit(0));
