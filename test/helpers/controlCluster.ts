import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { freePort, startSmmf, trackChild, type SmmfProcess } from "./childProcess.js";
import { startDistGateway, waitFor, type DistGateway } from "./distCluster.js";
import type { TestEtcd } from "./startEtcd.js";
import { projectRoot, testModelPath } from "./testModel.js";

/** Helpers for the controller tests: bare workers (no configured models), controllers and the REST API. */

/** The test model's file name, as a source relative to the workers' model directory. */
export function testSource(): string {
  return basename(testModelPath());
}

export interface BareWorker {
  proc: SmmfProcess;
  workerId: string;
  address: string;
}

export interface BareWorkerOptions {
  leaseTtl?: number;
  labels?: string[];
  maxMemoryMb?: number;
  /** Hosts http(s) model sources may come from (the operator's allow-list; default none). */
  sourceHosts?: string[];
  /** Let model downloads reach loopback and private addresses (the test's file servers are on 127.0.0.1). */
  sourceAllowPrivate?: boolean;
  /** More environment variables. */
  env?: Record<string, string>;
}

/** `smmf worker --no-models` on the test etcd, its model directory the test model's folder. */
export async function startBareWorker(etcd: TestEtcd, workerId: string, options: BareWorkerOptions = {}): Promise<BareWorker> {
  // Its own data folder: downloads (http sources) land there, never in the shared model folder.
  const dataDir = mkdtempSync(join(tmpdir(), `smmf-${workerId}-`));
  const args = ["worker", "--etcd", etcd.endpoints, "--no-models", "--model-dir", dirname(testModelPath()), "--data-dir", dataDir, "--gpu", "off", "--threads", "1"];
  args.push("--lease-ttl", String(options.leaseTtl ?? 2), "--log-level", "warn", "--worker-id", workerId, "--shutdown-grace-ms", "5000");
  for (const label of options.labels ?? []) args.push("--label", label);
  if (options.maxMemoryMb !== undefined) args.push("--max-memory-mb", String(options.maxMemoryMb));
  // The model-source policy through the environment, as an operator's deployment may set it.
  const env: Record<string, string> = { ...options.env };
  if (options.sourceHosts) env.SMMF_SOURCE_HOSTS = options.sourceHosts.join(",");
  if (options.sourceAllowPrivate !== undefined) env.SMMF_SOURCE_ALLOW_PRIVATE = options.sourceAllowPrivate ? "on" : "off";
  const proc = await startSmmf(args, { timeoutMs: 60_000, env });
  const m = /SMMF worker (\S+) serving .* at (\S+)/.exec(proc.stdout());
  if (!m) throw new Error(`unexpected worker output: ${proc.stdout()}`);
  return { proc, workerId, address: m[2] };
}

export interface ControllerProc {
  proc: SmmfProcess;
  id: string;
  url: string;
}

/** `smmf controller` on a free port. */
export async function startControllerProc(etcd: TestEtcd, id: string, leaseTtl = 2): Promise<ControllerProc> {
  const port = await freePort();
  const proc = await startSmmf(["controller", "--etcd", etcd.endpoints, "--port", String(port), "--controller-id", id, "--lease-ttl", String(leaseTtl), "--log-level", "warn"], { timeoutMs: 60_000 });
  const m = /SMMF controller (\S+) serving at (\S+)/.exec(proc.stdout());
  if (!m) throw new Error(`unexpected controller output: ${proc.stdout()}`);
  return { proc, id: m[1], url: m[2] };
}

/** A gateway, and its root URL (without /v1). */
export async function startApiGateway(etcd: TestEtcd): Promise<DistGateway & { root: string }> {
  const gateway = await startDistGateway(etcd);
  return { ...gateway, root: gateway.baseURL.replace(/\/v1$/, "") };
}

export interface ApiResponse {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

/** One REST call; the body is sent and parsed as JSON. */
export async function api(root: string, method: string, path: string, body?: unknown): Promise<ApiResponse> {
  const res = await fetch(`${root}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed };
}

/** A model as GET /api/v1/models/{name} shows it (proto JSON: zero values are left out). */
export interface ModelView {
  name: string;
  desiredReplicas?: number;
  readyReplicas?: number;
  generation?: string;
  message?: string;
  instances?: InstanceView[];
  spec?: { replicas?: number; llamaCpp?: { contextSize?: number } };
}

export interface InstanceView {
  instanceId: string;
  model: string;
  workerId: string;
  state: string;
  generation?: string;
  managed?: boolean;
  contextSize?: number;
}

export async function getModel(root: string, name: string): Promise<ModelView | undefined> {
  const res = await api(root, "GET", `/api/v1/models/${encodeURIComponent(name)}`);
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new Error(`GET model ${name}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as ModelView;
}

/** Waits until the model has `replicas` instances, all online and of its current generation, and nothing else. */
export async function waitSettled(root: string, name: string, replicas: number, timeoutMs = 30_000): Promise<ModelView> {
  return waitFor(
    `'${name}' to have ${replicas} online instances of its current generation`,
    async () => {
      const model = await getModel(root, name);
      const instances = model?.instances ?? [];
      const settled = instances.length === replicas && instances.every((i) => i.state === "INSTANCE_STATE_ONLINE" && i.generation === model!.generation);
      return settled ? model : undefined;
    },
    timeoutMs,
    100,
  );
}

/** The leader record in etcd, or undefined. */
export async function leaderRecord(etcd: TestEtcd): Promise<{ controllerId: string; term: string; address: string } | undefined> {
  const out = await etcd.etcdctl("--dial-timeout=2s", "--command-timeout=5s", "get", "/smmf/v1/controller/leader", "--print-value-only");
  return out.trim() ? JSON.parse(out.trim()) : undefined;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** This process's environment without SMMF_* variables. */
function cliEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("SMMF_")) env[k] = v;
  return env;
}

/** Runs `node bin/smmf.js ...args` to its end (at most `timeoutMs`), without SMMF_* variables from this process (`extraEnv` added). */
export function runCli(args: string[], timeoutMs = 60_000, root = projectRoot, extraEnv: Record<string, string> = {}): Promise<CliResult> {
  const env = { ...cliEnv(), ...extraEnv };
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [resolve(root, "bin/smmf.js"), ...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    trackChild(child);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`smmf ${args.join(" ")} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/** A command started by startCliStream. */
export interface CliStream {
  stdout(): string;
  stderr(): string;
  /**
   * Resolves once stderr matches `pattern` (a command's readiness line, e.g. /following events at /); rejects,
   * with both outputs, when the process exits first or `timeoutMs` passes.
   */
  readyOn(pattern: RegExp, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts `node bin/smmf.js ...args` that runs until killed (e.g. `smmf events`); collects its stdout and stderr. */
export function startCliStream(args: string[]): CliStream {
  const env = cliEnv();
  const child = spawn(process.execPath, [resolve(projectRoot, "bin/smmf.js"), ...args], { cwd: projectRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  trackChild(child);
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  return {
    stdout: () => out,
    stderr: () => err,
    readyOn: (pattern, timeoutMs = 30_000) =>
      new Promise<void>((resolveReady, rejectReady) => {
        const fail = (why: string) => {
          done();
          rejectReady(new Error(`smmf ${args.join(" ")}: ${why}\n--- stdout ---\n${out}\n--- stderr ---\n${err}`));
        };
        const check = () => {
          if (!pattern.test(err)) return;
          done();
          resolveReady();
        };
        const onExit = (code: number | null, signal: string | null) => fail(`exited (code ${code}, signal ${signal}) before printing ${pattern}`);
        const timer = setTimeout(() => fail(`printed nothing matching ${pattern} on stderr within ${timeoutMs} ms`), timeoutMs);
        const done = () => {
          clearTimeout(timer);
          child.stderr.off("data", check);
          child.off("exit", onExit);
        };
        child.stderr.on("data", check);
        child.once("exit", onExit);
        if (child.exitCode !== null || child.signalCode !== null) return onExit(child.exitCode, child.signalCode);
        check();
      }),
    stop: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null || child.signalCode !== null) return r();
        child.once("exit", () => r());
        child.kill("SIGKILL");
      }),
  };
}
