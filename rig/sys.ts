import { execFile, execFileSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** Programs the rig runs, and the Debian package of each (what `.ci/run` / scripts/ensure-tools.sh installs). */
export const RIG_TOOLS: Record<string, string> = {
  ip: "iproute2",
  iptables: "iptables",
  "iptables-restore": "iptables",
  etcd: "etcd-server",
  etcdctl: "etcd-client",
  setpriv: "util-linux",
};

/** The absolute path of `command` on PATH (plus the sbin folders, which a non-login root shell may lack), or undefined. */
export function which(command: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    if (!dir) continue;
    const path = join(dir, command);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Throws, saying how to fix it, unless this process is root and every tool the rig needs is installed.
 * Never a skip: a machine that cannot run the rig fails its tests with this message.
 */
export function requireRigPrerequisites(): void {
  if (process.platform !== "linux") throw new Error("the multi-host rig needs Linux (network namespaces, veth pairs, a bridge, iptables)");
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new Error("the multi-host rig needs root (it creates network namespaces, veth pairs, a bridge and iptables rules): run it as root, e.g. `sudo npm run rig` or the tests as root in CI");
  }
  const missing = Object.keys(RIG_TOOLS).filter((tool) => !which(tool));
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((tool) => RIG_TOOLS[tool]))];
    throw new Error(
      `the multi-host rig needs ${missing.join(", ")}, not found on PATH. Install ${packages.length > 1 ? "them" : "it"} with ` +
        `\`apt-get install -y ${packages.join(" ")}\` (Debian/Ubuntu, as root), or run \`bash scripts/ensure-tools.sh\`, which installs what the tests need.`,
    );
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a program to its end (at most timeoutMs); rejects with its stderr when it fails. `input` is written to its stdin. */
export function run(command: string, args: string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      which(command) ?? command,
      args,
      { timeout: options.timeoutMs ?? 15_000, maxBuffer: 32 * 1024 * 1024, env: options.env ?? process.env },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${command} ${args.join(" ")} failed: ${error.message.split("\n")[0]}${stderr ? `\n${stderr.trim()}` : ""}`));
        else resolvePromise({ stdout, stderr });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** run(), synchronously and never throwing (for teardown in an 'exit' handler); returns stdout, or "" on failure. */
export function runQuiet(command: string, args: string[]): string {
  try {
    return execFileSync(which(command) ?? command, args, { stdio: ["ignore", "pipe", "ignore"], timeout: 10_000 }).toString();
  } catch {
    return "";
  }
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export { sleep, waitFor } from "../test/helpers/waitFor.js";
