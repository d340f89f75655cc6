import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { LoadProgress, LoadSpec, RequestRecord } from "./load.js";
import { RigProcess } from "./RigProcess.js";
import { alive, requireRigPrerequisites, run, runQuiet, waitFor } from "./sys.js";
import type { RelaySettings, RelayStats } from "./TcpRelay.js";
import { exitSet } from "../test/helpers/exitSet.js";

/** The project's root folder (bin/smmf.js, node_modules). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export type Role = "etcd" | "controller" | "worker" | "gateway" | "client" | "relay";

/** One host of the rig: a network namespace with one address on the rig's bridge, and what runs in it. */
export interface Component {
  name: string;
  role: Role;
  /** The network namespace. */
  netns: string;
  /** Its address on the bridge. */
  address: string;
  /** The host side of its veth pair (on the bridge). */
  hostVeth: string;
  /** The port it serves (etcd: client port; worker: gRPC; gateway, controller: HTTP). */
  port: number;
  /** Where others reach it: http://address:port. */
  url: string;
  /** The SMMF id (worker, controller) or etcd member name. */
  id: string;
  dataDir: string;
  process?: RigProcess;
}

export interface RigOptions {
  /** The /24 to use, as its first three octets ("10.231.0"); default the first of 10.231.0–99 the host does not use. */
  subnet?: string;
  /** Lease TTL of workers, controllers and gateways, in seconds (default 3, the product default). */
  leaseTtl?: number;
  /** Gateway routing policy (default p2c). */
  policy?: string;
  /** Sequences per worker instance (default 8). */
  sequences?: number;
  /** A relay (slow, lossy link) between this gateway and this worker: the gateway's connections to the worker go through it. */
  slowLink?: { gateway: string; worker: string };
  /** The test model (default: stories260K.gguf in SMMF_MODEL_DIR or ../shared/models). */
  modelPath?: string;
  /** Progress messages (default: none). */
  log?: (line: string) => void;
  /** More flags per role. */
  workerArgs?: string[];
  gatewayArgs?: string[];
  controllerArgs?: string[];
  /** How long start() may take before it gives up (default 180 s). */
  startTimeoutMs?: number;
}

/** The model every worker serves from the start (statically, --model). */
export const RIG_MODEL = "stories260K";

/** host numbers (last octet) of each component; ports. */
const LAYOUT: { name: string; role: Role; host: number; port: number }[] = [
  { name: "etcd1", role: "etcd", host: 11, port: 2379 },
  { name: "etcd2", role: "etcd", host: 12, port: 2379 },
  { name: "etcd3", role: "etcd", host: 13, port: 2379 },
  { name: "ctl1", role: "controller", host: 21, port: 8100 },
  { name: "ctl2", role: "controller", host: 22, port: 8100 },
  { name: "wrk1", role: "worker", host: 31, port: 7001 },
  { name: "wrk2", role: "worker", host: 32, port: 7001 },
  { name: "wrk3", role: "worker", host: 33, port: 7001 },
  { name: "gw1", role: "gateway", host: 41, port: 8000 },
  { name: "gw2", role: "gateway", host: 42, port: 8000 },
  { name: "client", role: "client", host: 51, port: 0 },
  { name: "relay", role: "relay", host: 61, port: 7001 },
];

const NETNS_PREFIX = "smmfrig-";
const TMP_PREFIX = "smmf-rig-";
const LINK_PREFIX = "smr";

/** What an instance looks like on a gateway's /api/v1/instances. */
export interface GatewayInstance {
  instanceId: string;
  model: string;
  workerId: string;
  address: string;
  state: string;
  pickable: boolean;
  gatewayInFlight?: number;
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** Set when the agent could not reach the address: "timeout", "ECONNREFUSED", "EHOSTUNREACH", ... */
  proxyError?: string;
  json(): any;
}

/** A load running in the client namespace. */
export interface LoadRun {
  /** Resolves once `done` requests have ended (rejects if the load ends first with fewer). */
  after(done: number): Promise<LoadProgress>;
  /** The latest progress. */
  progress(): LoadProgress;
  /** Stops sending (requests in flight finish); `records` then resolves. */
  stop(): Promise<void>;
  records: Promise<RequestRecord[]>;
}

// ---------------------------------------------------------------------------------------------
// Rigs of this process, torn down when it exits, whatever the reason (an 'exit' handler runs synchronously).

const liveRigs = () => exitSet<Rig>("smmf.rig.live", (rig) => rig.teardownSync());

let rigCounter = 0;

function modelPathDefault(): string {
  const dir = process.env.SMMF_MODEL_DIR ? resolve(process.env.SMMF_MODEL_DIR) : resolve(PROJECT_ROOT, "../shared/models");
  const path = resolve(dir, "stories260K.gguf");
  if (!existsSync(path)) {
    throw new Error(
      `The test model is missing: ${path}\nDownload stories260K.gguf (1.1 MB, the Hugging Face repository ggml-org/models, file tinyllamas/stories260K.gguf) into ../shared/models beside the project, or set SMMF_MODEL_DIR to the folder that holds it.`,
    );
  }
  return path;
}

/** This process's environment without SMMF_*, ETCD_* and ETCDCTL_* variables (they would configure the children). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (key.startsWith("SMMF_") || ((key.startsWith("ETCD_") || key.startsWith("ETCDCTL_")) && key !== "ETCD_UNSUPPORTED_ARCH")) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

/**
 * Removes what crashed rigs left behind: namespaces, links and temporary folders whose owning process is gone
 * (the owner's pid is in their names), and any of this process's pid that no live rig of this process holds (a pid reused in a
 * fresh container). Processes still running inside such namespaces are killed first.
 */
export function removeLeftovers(log: (line: string) => void = () => undefined): void {
  const ownTags = new Set([...liveRigs()].map((r) => r.tag));
  const stale = (pid: number, tag: string) => (pid === process.pid ? !ownTags.has(tag) : !alive(pid));
  for (const line of runQuiet("ip", ["netns", "list"]).split("\n")) {
    const name = line.split(" ")[0];
    const m = new RegExp(`^${NETNS_PREFIX}(\\d+)-(\\d+)-`).exec(name);
    if (!m || !stale(Number(m[1]), `${m[1]}-${m[2]}`)) continue;
    for (const pid of runQuiet("ip", ["netns", "pids", name]).split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // gone
      }
    }
    runQuiet("ip", ["netns", "del", name]);
    log(`removed a leftover namespace ${name}`);
  }
  for (const line of runQuiet("ip", ["-o", "link", "show"]).split("\n")) {
    const m = new RegExp(`^\\d+: (${LINK_PREFIX}([0-9a-z]+)\\.(\\d+)(?:b|h\\d+))[@:]`).exec(line);
    if (!m) continue;
    const pid = parseInt(m[2], 36);
    if (!stale(pid, `${pid}-${m[3]}`)) continue;
    runQuiet("ip", ["link", "del", m[1]]);
    log(`removed a leftover link ${m[1]}`);
  }
  for (const name of readdirSync(tmpdir())) {
    const m = new RegExp(`^${TMP_PREFIX}(\\d+)-(\\d+)-`).exec(name);
    if (!m || !stale(Number(m[1]), `${m[1]}-${m[2]}`)) continue;
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
    log(`removed a leftover folder ${join(tmpdir(), name)}`);
  }
}

/** The first /24 of 10.231.0–99 that no address or route of the host's namespace falls into. */
async function freeSubnet(): Promise<string> {
  const { stdout: addrs } = await run("ip", ["-4", "-o", "addr", "show"]);
  const { stdout: routes } = await run("ip", ["-4", "route", "show", "table", "all"]);
  const used = `${addrs}\n${routes}`;
  for (let third = 0; third < 100; third++) {
    const subnet = `10.231.${third}`;
    if (!used.includes(` ${subnet}.`) && !used.includes(`\n${subnet}.`) && !used.startsWith(`${subnet}.`)) return subnet;
  }
  throw new Error("no free /24 in 10.231.0.0/16 for the rig: pass a subnet");
}

/**
 * The multi-host rig: Linux network namespaces joined by veth pairs on a bridge, each component in its own
 * namespace with its own address: 3 etcd members, 2 controllers, 3 workers, 2 gateways, a client (the load
 * generator, and the way in for the process that runs the rig), and optionally a relay (a slow, lossy link).
 * Nothing is routed beyond the rig's /24: its processes reach only each other.
 */
export class Rig {
  readonly tag: string;
  readonly subnet: string;
  readonly leaseTtl: number;
  readonly bridge: string;
  readonly dir: string;
  readonly components = new Map<string, Component>();
  readonly clusterSecret = randomBytes(24).toString("hex");
  apiKey = "";
  private readonly options: RigOptions;
  private readonly log: (line: string) => void;
  private readonly socketPath: string;
  private readonly processes = new Set<RigProcess>();
  private loadCounter = 0;
  private closed = false;
  private netnsCreated: string[] = [];

  private constructor(options: RigOptions, subnet: string) {
    const seq = ++rigCounter;
    this.tag = `${process.pid}-${seq}`;
    this.options = options;
    this.log = options.log ?? (() => undefined);
    this.subnet = subnet;
    this.leaseTtl = options.leaseTtl ?? 3;
    const linkTag = `${LINK_PREFIX}${process.pid.toString(36)}.${seq}`;
    this.bridge = `${linkTag}b`;
    this.dir = mkdtempSync(join(tmpdir(), `${TMP_PREFIX}${this.tag}-`));
    this.socketPath = join(this.dir, "agent.sock");
    const wanted = LAYOUT.filter((c) => c.role !== "relay" || options.slowLink);
    for (const [index, c] of wanted.entries()) {
      const address = `${subnet}.${c.host}`;
      const dataDir = join(this.dir, c.name);
      mkdirSync(dataDir);
      this.components.set(c.name, {
        name: c.name,
        role: c.role,
        netns: `${NETNS_PREFIX}${this.tag}-${c.name}`,
        address,
        hostVeth: `${linkTag}h${index}`,
        port: c.port,
        url: `http://${address}:${c.port}`,
        id: c.role === "etcd" ? c.name : `rig-${c.name}`,
        dataDir,
      });
    }
  }

  /** Builds the network, starts every process and waits until the cluster serves; tears down on failure. */
  static async start(options: RigOptions = {}): Promise<Rig> {
    requireRigPrerequisites();
    const log = options.log ?? (() => undefined);
    const modelPath = options.modelPath ?? modelPathDefault();
    removeLeftovers(log);
    const rig = new Rig({ ...options, modelPath }, options.subnet ?? (await freeSubnet()));
    liveRigs().add(rig);
    const deadline = Date.now() + (options.startTimeoutMs ?? 180_000);
    try {
      await rig.buildNetwork();
      await rig.startProcesses(deadline);
      return rig;
    } catch (err) {
      await rig.close();
      throw err;
    }
  }

  // ---- lookup -----------------------------------------------------------------------------------

  component(name: string): Component {
    const c = this.components.get(name);
    if (!c) throw new Error(`the rig has no component '${name}' (it has ${[...this.components.keys()].join(", ")})`);
    return c;
  }

  byRole(role: Role): Component[] {
    return [...this.components.values()].filter((c) => c.role === role);
  }

  proc(name: string): RigProcess {
    const p = this.component(name).process;
    if (!p) throw new Error(`${name} has no process`);
    return p;
  }

  get etcdEndpoints(): string {
    return this.byRole("etcd")
      .map((c) => c.url)
      .join(",");
  }

  get gateways(): Component[] {
    return this.byRole("gateway");
  }

  get workers(): Component[] {
    return this.byRole("worker");
  }

  get controllers(): Component[] {
    return this.byRole("controller");
  }

  /** A table of every component: name, namespace, address, port, pid. */
  describe(): string {
    const rows = [...this.components.values()].map((c) => [c.name, c.netns, c.address, c.port ? String(c.port) : "-", c.process ? String(c.process.pid) : "-", c.id]);
    const head = ["component", "namespace", "address", "port", "pid", "id"];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i])).join("  ");
    return [line(head), ...rows.map(line)].join("\n");
  }

  // ---- network ----------------------------------------------------------------------------------

  private async buildNetwork(): Promise<void> {
    this.log(`building the network: bridge ${this.bridge}, ${this.components.size} namespaces on ${this.subnet}.0/24`);
    // The bridge does not pass its frames through the host's iptables (br_netfilter): the host's rules (a
    // FORWARD policy of DROP, say) must not decide the rig's traffic, and the rig's rules live in its namespaces.
    const host = [`link add ${this.bridge} type bridge`, `link set ${this.bridge} type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0`, `link set ${this.bridge} up`];
    for (const c of this.components.values()) {
      host.push(`netns add ${c.netns}`);
      this.netnsCreated.push(c.netns);
    }
    for (const c of this.components.values()) {
      host.push(`link add ${c.hostVeth} type veth peer name eth0 netns ${c.netns}`, `link set ${c.hostVeth} master ${this.bridge} up`);
    }
    await run("ip", ["-batch", "-"], { input: `${host.join("\n")}\n` });
    await Promise.all(
      [...this.components.values()].map((c) =>
        run("ip", ["-n", c.netns, "-batch", "-"], { input: `addr add ${c.address}/24 dev eth0\nlink set eth0 up\nlink set lo up\n` }),
      ),
    );
  }

  private ruleLines(name: string, from: string[] | "all"): string[] {
    if (from === "all") return ["-A INPUT ! -i lo -j DROP", "-A OUTPUT ! -o lo -j DROP"];
    return from.flatMap((peer) => {
      const address = this.component(peer).address;
      return [`-A INPUT -s ${address}/32 -j DROP`, `-A OUTPUT -d ${address}/32 -j DROP`];
    });
  }

  /**
   * Cuts a component off: from every other address (default), or only from the given components, both
   * ways, with iptables DROP rules in its namespace (packets vanish: peers see silence, not a reset). All its
   * rules go in at once (iptables-restore). `from` may name roles too: "etcd" means every etcd member.
   */
  async cut(name: string, from: string[] | "all" = "all"): Promise<void> {
    const peers = from === "all" ? "all" : from.flatMap((f) => (["etcd", "controller", "worker", "gateway", "client", "relay"].includes(f) ? this.byRole(f as Role).map((c) => c.name) : [f]));
    const c = this.component(name);
    await run("ip", ["netns", "exec", c.netns, "iptables-restore", "--noflush", "-w", "5"], { input: `*filter\n${this.ruleLines(name, peers).join("\n")}\nCOMMIT\n` });
    this.log(`cut ${name} off from ${peers === "all" ? "everything" : peers.join(", ")}`);
  }

  /** Removes the DROP rules of a component (all components when none is named). */
  async heal(name?: string): Promise<void> {
    const targets = name ? [this.component(name)] : [...this.components.values()];
    await Promise.all(targets.map((c) => run("ip", ["netns", "exec", c.netns, "iptables-restore", "--noflush", "-w", "5"], { input: "*filter\n-F INPUT\n-F OUTPUT\nCOMMIT\n" })));
    this.log(`healed ${name ?? "every component"}`);
  }

  /** Takes a component's link down (its address and route go with it: its sends fail at once) or up again. */
  async linkDown(name: string): Promise<void> {
    await run("ip", ["-n", this.component(name).netns, "link", "set", "eth0", "down"]);
  }

  async linkUp(name: string): Promise<void> {
    const c = this.component(name);
    await run("ip", ["-n", c.netns, "link", "set", "eth0", "up"]);
  }

  // ---- processes --------------------------------------------------------------------------------

  private spawn(c: Component, argv: string[], env: Record<string, string> = {}, cwd = c.dataDir): RigProcess {
    const p = new RigProcess(argv, { netns: c.netns, cwd, env: cleanEnv({ SMMF_CLUSTER_SECRET: this.clusterSecret, ...env }), name: c.name });
    this.processes.add(p);
    void p.exited.then(() => this.processes.delete(p));
    c.process = p;
    return p;
  }

  private smmfArgs(c: Component): string[] {
    const node = process.execPath;
    const bin = join(PROJECT_ROOT, "bin/smmf.js");
    const common = ["--etcd", this.etcdEndpoints, "--lease-ttl", String(this.leaseTtl), "--log-level", "info", "--data-dir", c.dataDir];
    const modelPath = this.options.modelPath!;
    switch (c.role) {
      case "worker":
        return [node, bin, "worker", ...common, "--worker-host", c.address, "--worker-port", String(c.port), "--advertise", c.url, "--worker-id", c.id,
          "--model", `${RIG_MODEL}=${modelPath}`, "--model-dir", dirname(modelPath), "--gpu", "off", "--threads", "1", "--sequences", String(this.options.sequences ?? 8),
          "--shutdown-grace-ms", "2000", ...(this.options.workerArgs ?? [])];
      case "gateway":
        return [node, bin, "gateway", ...common, "--host", c.address, "--port", String(c.port), "--policy", this.options.policy ?? "p2c",
          "--queue-size", "2048", "--queue-timeout-ms", "120000", ...(this.options.gatewayArgs ?? [])];
      case "controller":
        return [node, bin, "controller", ...common, "--host", c.address, "--port", String(c.port), "--controller-id", c.id, ...(this.options.controllerArgs ?? [])];
      default:
        throw new Error(`no smmf role for ${c.role}`);
    }
  }

  /** Starts (or starts again) the SMMF process of a component; resolves once it prints its "serving" line. */
  async startSmmf(name: string, timeoutMs = 90_000): Promise<RigProcess> {
    const c = this.component(name);
    if (c.process?.running) throw new Error(`${name} is running already`);
    const p = this.spawn(c, this.smmfArgs(c));
    await p.waitForLine(/SMMF (worker|gateway|controller) .*serving/, { timeoutMs, what: "its 'serving' line" });
    return p;
  }

  private startEtcd(c: Component): RigProcess {
    const peers = this.byRole("etcd")
      .map((e) => `${e.id}=http://${e.address}:2380`)
      .join(",");
    return this.spawn(c, [
      "etcd", "--name", c.id, "--data-dir", join(c.dataDir, "data"), "--logger=zap",
      "--listen-client-urls", c.url, "--advertise-client-urls", c.url,
      "--listen-peer-urls", `http://${c.address}:2380`, "--initial-advertise-peer-urls", `http://${c.address}:2380`,
      "--initial-cluster", peers, "--initial-cluster-state", "new", "--initial-cluster-token", `smmfrig-${this.tag}`,
    ]);
  }

  /** etcd members whose /health says true (asked through the client). */
  async etcdHealthy(name: string, timeoutMs = 2_000): Promise<boolean> {
    const res = await this.http(`${this.component(name).url}/health`, { timeoutMs });
    return res.status === 200 && res.json().health === "true";
  }

  private async startProcesses(deadline: number): Promise<void> {
    const left = () => Math.max(1_000, deadline - Date.now());
    const client = this.component("client");
    const agent = this.spawn(client, [process.execPath, "--import", "tsx", join(PROJECT_ROOT, "rig/agent.ts"), "--socket", this.socketPath, "--subnet", this.subnet], {}, PROJECT_ROOT);
    const etcds = this.byRole("etcd");
    for (const e of etcds) this.startEtcd(e);
    await agent.waitForLine(/rig agent listening/, { timeoutMs: left(), what: "the agent's 'listening' line" });
    this.log("agent up; waiting for the etcd cluster");
    await waitFor("every etcd member to be healthy", async () => (await Promise.all(etcds.map((e) => this.etcdHealthy(e.name).catch(() => false)))).every(Boolean), left(), 100);

    // The first admin key: gateways and controllers listening beyond loopback refuse to start without one.
    const keyProc = this.spawn(client, [process.execPath, join(PROJECT_ROOT, "bin/smmf.js"), "key", "create", "rig-admin", "--role", "admin", "--bootstrap", "--etcd", this.etcdEndpoints, "--json"]);
    const exit = await keyProc.exited;
    const out = keyProc.output(0, "stdout").map((l) => l.text).join("\n");
    if (exit.code !== 0) throw new Error(`smmf key create --bootstrap failed (${JSON.stringify(exit)}):\n${keyProc.tail()}`);
    this.apiKey = JSON.parse(out).secret;
    client.process = agent;

    this.log("etcd up; starting controllers, workers and gateways");
    const smmf = [...this.controllers, ...this.workers, ...this.gateways];
    await Promise.all(smmf.map((c) => this.startSmmf(c.name, left())));

    const slow = this.options.slowLink;
    if (slow) await this.startRelay(slow.gateway, slow.worker, left());

    this.log("processes up; waiting for the gateways to see every instance and for a leader");
    await this.waitAllPickable(left());
    await waitFor("exactly one leading controller", async () => (await this.leaders()).length === 1, left(), 100);
  }

  private async startRelay(gateway: string, worker: string, timeoutMs: number): Promise<void> {
    const relay = this.component("relay");
    const w = this.component(worker);
    const p = this.spawn(relay, [process.execPath, "--import", "tsx", join(PROJECT_ROOT, "rig/relay.ts"), "--listen", `${relay.address}:${relay.port}`, "--target", `${w.address}:${w.port}`], {}, PROJECT_ROOT);
    await p.waitForLine(/relay ready/, { timeoutMs, what: "the relay's 'ready' line" });
    // The gateway's connections to the worker go to the relay instead (set up before its first connection to it).
    await run("ip", ["netns", "exec", this.component(gateway).netns, "iptables-restore", "--noflush", "-w", "5"], {
      input: `*nat\n-A OUTPUT -p tcp -d ${w.address}/32 --dport ${w.port} -j DNAT --to-destination ${relay.address}:${relay.port}\nCOMMIT\n`,
    });
    this.log(`relay up: ${gateway} → relay (${relay.address}) → ${worker}`);
  }

  /** Changes the relay's settings (delay, jitter, drops); resolves with those in force. */
  async setRelay(settings: Partial<RelaySettings>): Promise<RelaySettings> {
    const p = this.proc("relay");
    const mark = p.mark();
    p.send(JSON.stringify({ set: settings }));
    const line = await p.waitForLine(/^relay settings /, { after: mark, timeoutMs: 5_000 });
    return JSON.parse(line.text.slice("relay settings ".length));
  }

  async relayStats(): Promise<RelayStats> {
    const p = this.proc("relay");
    const mark = p.mark();
    p.send(JSON.stringify({ stats: true }));
    const line = await p.waitForLine(/^relay stats /, { after: mark, timeoutMs: 5_000 });
    return JSON.parse(line.text.slice("relay stats ".length));
  }

  // ---- the client: HTTP from the client namespace -----------------------------------------------

  private agentRequest(method: string, path: string, options: { body?: string; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<http.IncomingMessage> {
    return new Promise((resolvePromise, reject) => {
      const req = http.request({ socketPath: this.socketPath, method, path, headers: { ...options.headers, ...(options.body !== undefined ? { "content-length": Buffer.byteLength(options.body) } : {}) } }, resolvePromise);
      req.on("error", reject);
      if (options.timeoutMs !== undefined) req.setTimeout(options.timeoutMs + 5_000, () => req.destroy(new Error(`the rig's agent did not answer ${method} ${path}`)));
      req.end(options.body);
    });
  }

  /**
   * An HTTP request from the client namespace to a rig address (`url` absolute). The admin key goes with it
   * unless `auth: false`. A JSON body is sent as such. Never throws for HTTP statuses; an unreachable address
   * answers with `proxyError` set (after `timeoutMs`, default 5 s, for one that does not answer).
   */
  async http(url: string, options: { method?: string; body?: unknown; timeoutMs?: number; auth?: boolean } = {}): Promise<HttpAnswer> {
    const timeoutMs = options.timeoutMs ?? 5_000;
    const headers: Record<string, string> = { "x-rig-timeout-ms": String(timeoutMs) };
    if (options.auth !== false && this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers["content-type"] = "application/json";
    }
    const res = await this.agentRequest(options.method ?? (body === undefined ? "GET" : "POST"), url, { body, headers, timeoutMs });
    const text = await new Promise<string>((resolvePromise, reject) => {
      let t = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (t += c));
      res.on("end", () => resolvePromise(t));
      res.on("error", reject);
    });
    const proxyError = res.headers["x-rig-proxy-error"];
    return {
      status: res.statusCode ?? 0,
      headers: res.headers,
      text,
      proxyError: typeof proxyError === "string" ? proxyError : undefined,
      json: () => JSON.parse(text),
    };
  }

  /** The instances a gateway knows (GET /api/v1/instances), or undefined when it does not answer. */
  async gatewayInstances(gateway: string, timeoutMs = 2_000): Promise<GatewayInstance[] | undefined> {
    const res = await this.http(`${this.component(gateway).url}/api/v1/instances`, { timeoutMs }).catch(() => undefined);
    if (!res || res.status !== 200) return undefined;
    return res.json().data as GatewayInstance[];
  }

  /** Ids of the instances of `model` a gateway would pick now. */
  async pickSet(gateway: string, model = RIG_MODEL): Promise<string[] | undefined> {
    const list = await this.gatewayInstances(gateway);
    return list?.filter((i) => i.model === model && i.pickable).map((i) => i.instanceId).sort();
  }

  /** The instance id of a worker's static model instance, as the gateways list it. */
  async instanceOf(worker: string, model = RIG_MODEL): Promise<string> {
    const id = this.component(worker).id;
    return waitFor(
      `an instance of ${model} on ${worker} in a gateway's registry`,
      async () => {
        for (const g of this.gateways) {
          const found = (await this.gatewayInstances(g.name))?.find((i) => i.workerId === id && i.model === model);
          if (found) return found.instanceId;
        }
        return undefined;
      },
      10_000,
      100,
    );
  }

  /** Waits until every gateway's pick set holds one instance of the rig's model per worker. */
  async waitAllPickable(timeoutMs = 30_000): Promise<void> {
    const workers = this.workers.length;
    await waitFor(
      `every gateway to pick among ${workers} instances of ${RIG_MODEL}`,
      async () => {
        const sets = await Promise.all(this.gateways.map((g) => this.pickSet(g.name)));
        return sets.every((s) => s?.length === workers);
      },
      timeoutMs,
      100,
    );
  }

  /** The controllers that say (on /healthz) they lead, with their terms. */
  async leaders(): Promise<{ name: string; term: string }[]> {
    const out: { name: string; term: string }[] = [];
    await Promise.all(
      this.controllers.map(async (c) => {
        const res = await this.http(`${c.url}/healthz`, { timeoutMs: 2_000 }).catch(() => undefined);
        if (res?.status === 200 && res.json().leader) out.push({ name: c.name, term: String(res.json().term) });
      }),
    );
    return out;
  }

  /** A controller's /healthz: whether it leads, and its term. */
  async controllerHealth(name: string): Promise<{ leader: boolean; term: string | null } | undefined> {
    const res = await this.http(`${this.component(name).url}/healthz`, { timeoutMs: 2_000 }).catch(() => undefined);
    return res?.status === 200 ? res.json() : undefined;
  }

  /** The etcd member that leads the Raft group now (etcd_server_is_leader on its /metrics). */
  async etcdLeader(): Promise<string | undefined> {
    for (const e of this.byRole("etcd")) {
      const res = await this.http(`${e.url}/metrics`, { timeoutMs: 2_000 }).catch(() => undefined);
      if (res?.status === 200 && /^etcd_server_is_leader 1$/m.test(res.text)) return e.name;
    }
    return undefined;
  }

  /** Runs etcdctl (API v3) in the client namespace against every member; resolves with its stdout. */
  async etcdctl(...args: string[]): Promise<string> {
    return this.etcdctlOn(this.byRole("etcd").map((e) => e.name), ...args);
  }

  /** etcdctl against these members only (e.g. the ones not cut off). */
  async etcdctlOn(members: string[], ...args: string[]): Promise<string> {
    const endpoints = members.map((m) => this.component(m).url).join(",");
    const { stdout } = await run("ip", ["netns", "exec", this.component("client").netns, "etcdctl", `--endpoints=${endpoints}`, "--dial-timeout=2s", "--command-timeout=5s", ...args], {
      env: cleanEnv({ ETCDCTL_API: "3" }),
      timeoutMs: 15_000,
    });
    return stdout;
  }

  /** Keys under a prefix in etcd (asked of `members`, default all). */
  async etcdKeys(prefix: string, members = this.byRole("etcd").map((e) => e.name)): Promise<string[]> {
    return (await this.etcdctlOn(members, "get", "--prefix", prefix, "--keys-only"))
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean)
      .sort();
  }

  /** A gateway's /metrics, as text. */
  async metrics(name: string): Promise<string> {
    const res = await this.http(`${this.component(name).url}/metrics`, { timeoutMs: 5_000 });
    if (res.status !== 200) throw new Error(`${name} /metrics: ${res.status} ${res.proxyError ?? res.text.slice(0, 200)}`);
    return res.text;
  }

  /** Opens a controller Session on a worker with `term`, as a deposed leader would (see agent.ts). */
  async probeSession(worker: string, term: string): Promise<{ opened: boolean; commandResult?: { ok: boolean; errorCode: string; errorMessage: string }; error?: { code: string; smmfCode?: string; message: string } }> {
    const body = JSON.stringify({ address: this.component(worker).url, term });
    const res = await this.agentRequest("POST", "/session-probe", { body, headers: { "content-type": "application/json" }, timeoutMs: 10_000 });
    const text = await new Promise<string>((r) => {
      let t = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (t += c));
      res.on("end", () => r(t));
    });
    if (res.statusCode !== 200) throw new Error(`session probe: ${res.statusCode} ${text}`);
    return JSON.parse(text);
  }

  /**
   * Runs a load from the client namespace (see load.ts): completions round-robin over `targets` (default every
   * gateway), with the admin key.
   */
  load(spec: Omit<LoadSpec, "targets" | "model" | "apiKey"> & { targets?: string[]; model?: string }): LoadRun {
    const id = `${this.tag}-${++this.loadCounter}`;
    const full: LoadSpec = { model: RIG_MODEL, apiKey: this.apiKey, ...spec, targets: spec.targets ?? this.gateways.map((g) => g.url) };
    let progress: LoadProgress = { done: 0, failed: 0, inFlight: 0 };
    const waiters: { done: number; resolve: (p: LoadProgress) => void; reject: (e: Error) => void }[] = [];
    const records = (async () => {
      const res = await this.agentRequest("POST", `/load?id=${encodeURIComponent(id)}`, { body: JSON.stringify(full), headers: { "content-type": "application/json" } });
      if (res.statusCode !== 200) throw new Error(`the agent refused the load: ${res.statusCode}`);
      res.setEncoding("utf8");
      let pending = "";
      let result: RequestRecord[] | undefined;
      for await (const chunk of res as AsyncIterable<string>) {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) {
          if (!line) continue;
          const event = JSON.parse(line);
          if (event.type === "progress") {
            progress = { done: event.done, failed: event.failed, inFlight: event.inFlight };
            for (const w of [...waiters]) {
              if (progress.done >= w.done) {
                waiters.splice(waiters.indexOf(w), 1);
                w.resolve(progress);
              }
            }
          } else if (event.type === "result") result = event.records;
        }
      }
      if (!result) throw new Error("the load ended without its result");
      return result;
    })();
    void records.then(
      () => waiters.splice(0).forEach((w) => w.reject(new Error(`the load ended after ${progress.done} requests, before ${w.done}`))),
      (err: Error) => waiters.splice(0).forEach((w) => w.reject(err)),
    );
    return {
      after: (done) => (progress.done >= done ? Promise.resolve(progress) : new Promise((resolve, reject) => waiters.push({ done, resolve, reject }))),
      progress: () => progress,
      stop: async () => {
        const res = await this.agentRequest("DELETE", `/load?id=${encodeURIComponent(id)}`);
        res.resume();
      },
      records,
    };
  }

  /**
   * Heals every cut (rules and links) and waits until the rig is whole again: every etcd member healthy, every gateway picking
   * every worker's instance, one leading controller. Tests call it between scenarios.
   */
  async restore(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1_000, deadline - Date.now());
    await this.heal();
    await Promise.all([...this.components.values()].map((c) => this.linkUp(c.name)));
    for (const e of this.byRole("etcd")) await waitFor(`${e.name} to be healthy`, () => this.etcdHealthy(e.name).catch(() => false), left(), 100);
    await this.waitAllPickable(left());
    await waitFor("exactly one leading controller", async () => (await this.leaders()).length === 1, left(), 100);
  }

  // ---- teardown ---------------------------------------------------------------------------------

  /** Kills every process, deletes the namespaces, the bridge and the temporary folder. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.processes].map((p) => p.kill()));
    this.removeNetwork();
    rmSync(this.dir, { recursive: true, force: true });
    liveRigs().delete(this);
    this.log("rig torn down");
  }

  private removeNetwork(): void {
    for (const ns of this.netnsCreated) {
      for (const pid of runQuiet("ip", ["netns", "pids", ns]).split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // gone
        }
      }
      runQuiet("ip", ["netns", "del", ns]);
    }
    // The veths went with their namespaces; the bridge is the host's.
    runQuiet("ip", ["link", "del", this.bridge]);
    this.netnsCreated = [];
  }

  /** close(), synchronously: for an 'exit' handler. */
  teardownSync(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.processes) p.signal("SIGKILL");
    this.removeNetwork();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
