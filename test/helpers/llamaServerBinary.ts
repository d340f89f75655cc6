import { readdirSync, readFileSync } from "node:fs";
import { findLlamaServer } from "../../src/engines/llamaServer/llamaServerBuild.js";

/**
 * The llama-server binary the llama.cpp-server engine runs. Missing, the test fails saying how to get it
 * (npm test builds it first: scripts/test.sh).
 */
export function requireLlamaServer(): string {
  const bin = findLlamaServer();
  if (!bin) {
    throw new Error(
      "llama.cpp's llama-server is not built on this machine, and the llama.cpp-server engine's tests need it.\n" +
        "Build it once (15–25 minutes on 2 cores; needs git, cmake and g++): node bin/smmf.js engine build llama.cpp-server\n" +
        "(npm test does this first), or point SMMF_LLAMA_SERVER at a llama-server binary.",
    );
  }
  return bin;
}

/** The pids of the running llama-server processes whose parent is `parent` (zombies, exited but not reaped yet, left out). */
export function llamaServerChildren(parent: number = process.pid): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'.
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(stat.indexOf("(") + 1, close);
    const [state, ppid] = stat.slice(close + 2).split(" ");
    if (comm === "llama-server" && Number(ppid) === parent && state !== "Z") pids.push(Number(entry));
  }
  return pids;
}

/** Whether a process exists (and is not a zombie). */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}
