import { execFile, spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { freePorts, isRunning, tail, trackChild, waitForExit } from "./childProcess.js";
import { exitSet } from "./exitSet.js";

/** A single-member etcd started by startEtcd, on free ports, with its data in a temporary folder. */
export interface TestEtcd {
  /** The client URL, e.g. "http://127.0.0.1:PORT" (stays the same across stop/start). */
  endpoints: string;
  /** etcd's --data-dir (inside a temporary folder that close() removes). */
  dataDir: string;
  /** SIGTERM, and wait for the exit. Does nothing if it is not running. */
  stop(): Promise<void>;
  /** SIGKILL, and wait for the exit. Does nothing if it is not running. */
  kill(): Promise<void>;
  /** Start again on the same ports (after deleting the data folder, with wipe); waits until healthy. */
  start(options?: { wipe?: boolean }): Promise<void>;
  /** Runs `etcdctl --endpoints=<endpoints> ...args` (API v3); resolves with stdout, rejects on failure. */
  etcdctl(...args: string[]): Promise<string>;
  /** Stop it and remove the temporary folder. */
  close(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
const INSTALL_HINT =
  "Install it with `apt-get install -y etcd-server etcd-client` (Debian/Ubuntu, as root), " +
  "or run `npm test`, which provisions it (scripts/ensure-tools.sh).";

function onPath(command: string): boolean {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

function requireBinaries(): void {
  const missing = ["etcd", "etcdctl"].filter((c) => !onPath(c));
  if (missing.length > 0) {
    throw new Error(`${missing.join(" and ")} not found on PATH: the etcd tests need them. ${INSTALL_HINT}`);
  }
}

/**
 * This process's environment without ETCD_* / ETCDCTL_* variables (etcd and etcdctl read them as flags),
 * except ETCD_UNSUPPORTED_ARCH, which etcd needs on some architectures to start at all.
 */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    const flagLike = key.startsWith("ETCD_") || key.startsWith("ETCDCTL_");
    if (!flagLike || key === "ETCD_UNSUPPORTED_ARCH") env[key] = value;
  }
  return env;
}

function runEtcdctl(endpoints: string, args: string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      "etcdctl",
      [`--endpoints=${endpoints}`, ...args],
      { env: { ...cleanEnv(), ETCDCTL_API: "3" }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`etcdctl ${args.join(" ")} failed: ${error.message}\n${stderr}`.trimEnd()));
        } else {
          resolvePromise(stdout);
        }
      },
    );
  });
}

// Temporary folders of instances not closed yet: removed when this process exits, after the tracked
// etcd processes have been SIGKILLed (childProcess.ts registers its exit handler at import, first).
// A global, so a module evaluated twice shares one set and one handler.
const openDirs = exitSet<string>("smmf.test.etcdDirs", (dir) => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Starts etcd (a one-member cluster) on three free ports with a fresh data folder, and waits until
 * `etcdctl endpoint health` succeeds. Throws, with a hint on how to install it, when etcd is missing.
 */
export interface StartEtcdOptions {
  /**
   * TLS with client certificates (etcd --client-cert-auth): etcd serves `cert`/`key` and accepts clients with
   * certificates of `caFile`; etcdctl uses `client`. Endpoints are https.
   */
  tls?: { caFile: string; cert: string; key: string; client: { cert: string; key: string } };
}

export async function startEtcd(options: StartEtcdOptions = {}): Promise<TestEtcd> {
  requireBinaries();
  const tls = options.tls;
  const ctlArgs = tls ? [`--cacert=${tls.caFile}`, `--cert=${tls.client.cert}`, `--key=${tls.client.key}`] : [];
  const dir = await mkdtemp(join(tmpdir(), "smmf-etcd-"));
  openDirs.add(dir);
  const dataDir = join(dir, "data");
  const [clientPort, peerPort, metricsPort] = await freePorts(3);
  const endpoints = `${tls ? "https" : "http"}://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const name = "smmf-test";

  let child: ChildProcess | undefined;
  let stderr = "";

  const launch = async (): Promise<void> => {
    stderr = "";
    const proc = spawn(
      "etcd",
      [
        "--name", name,
        "--data-dir", dataDir,
        "--logger=zap",
        "--listen-client-urls", endpoints,
        "--advertise-client-urls", endpoints,
        "--listen-peer-urls", peerUrl,
        "--initial-advertise-peer-urls", peerUrl,
        "--initial-cluster", `${name}=${peerUrl}`,
        "--initial-cluster-state", "new",
        "--listen-metrics-urls", `http://127.0.0.1:${metricsPort}`,
        // One member: no peers to lose, so short Raft timers only make (re)starts quicker (~0.1 s, not ~1 s).
        "--heartbeat-interval=10",
        "--election-timeout=100",
        ...(tls ? ["--cert-file", tls.cert, "--key-file", tls.key, "--trusted-ca-file", tls.caFile, "--client-cert-auth"] : []),
      ],
      { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] },
    );
    child = proc;
    trackChild(proc);
    proc.stdout!.setEncoding("utf8");
    proc.stderr!.setEncoding("utf8");
    const capture = (chunk: string): void => {
      stderr += chunk;
      if (stderr.length > 256 * 1024) stderr = stderr.slice(-128 * 1024);
    };
    proc.stdout!.on("data", capture);
    proc.stderr!.on("data", capture);
    let spawnError: Error | undefined;
    proc.once("error", (error) => {
      spawnError = error;
    });

    const failure = (why: string): Error =>
      new Error(`etcd (${endpoints}, data ${dataDir}) ${why}\n--- etcd output (tail) ---\n${tail(stderr)}`);

    const exitedDuringStart = waitForExit(proc);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let lastError = "";
    for (;;) {
      if (spawnError) throw failure(`failed to start: ${spawnError.message}. ${INSTALL_HINT}`);
      if (!isRunning(proc)) {
        const info = await exitedDuringStart;
        throw failure(`exited during start-up (code ${info.code}, signal ${info.signal})`);
      }
      const health = runEtcdctl(endpoints, [...ctlArgs, "--dial-timeout=1s", "--command-timeout=2s", "endpoint", "health"], 5_000);
      const outcome = await Promise.race([
        health.then(
          () => "healthy" as const,
          (error: Error) => {
            lastError = error.message;
            return "unhealthy" as const;
          },
        ),
        exitedDuringStart.then(() => "exited" as const),
      ]);
      if (outcome === "healthy") return;
      if (outcome === "exited") continue; // reported at the top of the loop
      if (Date.now() > deadline) {
        proc.kill("SIGKILL");
        await waitForExit(proc);
        throw failure(`not healthy within ${READY_TIMEOUT_MS} ms; last check: ${lastError}`);
      }
      await sleep(100);
    }
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    if (!proc || !isRunning(proc)) return;
    proc.kill("SIGTERM");
    const timer = setTimeout(() => {
      if (isRunning(proc)) proc.kill("SIGKILL");
    }, STOP_TIMEOUT_MS);
    try {
      await waitForExit(proc);
    } finally {
      clearTimeout(timer);
    }
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    if (!proc || !isRunning(proc)) return;
    proc.kill("SIGKILL");
    await waitForExit(proc);
  };

  const start = async (options: { wipe?: boolean } = {}): Promise<void> => {
    if (child && isRunning(child)) throw new Error(`etcd at ${endpoints} is already running; stop() or kill() it first`);
    if (options.wipe) await rm(dataDir, { recursive: true, force: true });
    await launch();
  };

  try {
    await launch();
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    openDirs.delete(dir);
    throw error;
  }

  return {
    endpoints,
    dataDir,
    stop,
    kill,
    start,
    etcdctl: (...args: string[]) => runEtcdctl(endpoints, [...ctlArgs, ...args]),
    close: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
      openDirs.delete(dir);
    },
  };
}
