import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:net";
import { resolve } from "node:path";
import { projectRoot } from "./testModel.js";
import { exitSet } from "./exitSet.js";

/** How a child process ended. */
export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

/** A running `smmf` command started by startSmmf. */
export interface SmmfProcess {
  child: ChildProcess;
  pid: number;
  /** Everything the process has written to stdout so far. */
  stdout(): string;
  /** Everything the process has written to stderr so far. */
  stderr(): string;
  /** Sends a signal; does nothing once the process has exited. */
  signal(sig: NodeJS.Signals): void;
  /** Settles when the process exits (never rejects). */
  exited: Promise<ExitInfo>;
  /** SIGTERM, then SIGKILL after timeoutMs (default 10 s); resolves with how it ended. */
  stop(timeoutMs?: number): Promise<ExitInfo>;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<ExitInfo>;
}

export interface StartSmmfOptions {
  /** Resolve once stdout matches this (default /serving/). */
  readyPattern?: RegExp;
  /** Added to the environment (which has every SMMF_* variable of this process removed). */
  env?: Record<string, string>;
  /** How long to wait for readyPattern (default 30 s). */
  timeoutMs?: number;
  /** Another installation of SMMF to run (its folder, holding bin/smmf.js); default this project. */
  root?: string;
}

// ---------------------------------------------------------------------------------------------
// Children are tracked process-wide (a global, so a module loaded twice still shares one set and
// one handler) and SIGKILLed when this process exits, so a failing test leaves nothing running.

/** Children to SIGKILL when this process exits, unless they have exited by then. */
const tracked = () =>
  exitSet<ChildProcess>("smmf.test.childProcesses", (child) => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });

// Register the exit handler at import, so it runs before handlers registered by modules importing this one.
tracked();

/** Kill `child` with SIGKILL when this process exits, unless it has exited by then. */
export function trackChild(child: ChildProcess): void {
  const children = tracked();
  children.add(child);
  child.once("exit", () => children.delete(child));
}

/** Whether the child is still running (has not exited). */
export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * Resolves when the child exits. Waits on "exit" rather than "close" (a grandchild holding the pipes
 * would delay "close" forever), then gives the pipes a short moment to drain.
 */
export function waitForExit(child: ChildProcess): Promise<ExitInfo> {
  return new Promise((resolvePromise) => {
    const done = (code: number | null, signal: string | null): void => {
      const info = { code, signal };
      let settled = false;
      const finish = (): void => {
        if (!settled) {
          settled = true;
          resolvePromise(info);
        }
      };
      const pipesClosed = [child.stdout, child.stderr].every((s) => s === null || s.destroyed);
      if (pipesClosed) return finish();
      child.once("close", finish);
      // Not unref'd: a caller awaiting this must not see the event loop run dry ("close" may never come).
      setTimeout(finish, 250);
    };
    if (!isRunning(child)) done(child.exitCode, child.signalCode);
    else child.once("exit", done);
  });
}

/** The last `maxChars` characters of `text`, marked when cut. */
export function tail(text: string, maxChars = 4000): string {
  return text.length <= maxChars ? text : `…${text.slice(-maxChars)}`;
}

// ---------------------------------------------------------------------------------------------
// Ports

function listenOnZero(): Promise<Server> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolvePromise(server));
  });
}

/** `count` distinct free TCP ports on 127.0.0.1 (all bound at once, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await listenOnZero());
    return servers.map((s) => {
      const address = s.address();
      if (address === null || typeof address === "string") throw new Error("unexpected server address");
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

/** A free TCP port on 127.0.0.1 (bound to port 0, then released). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port;
}

// ---------------------------------------------------------------------------------------------
// smmf

/**
 * Runs `node bin/smmf.js ...args` in the project root with this process's environment minus every
 * SMMF_* variable, plus options.env. Resolves once stdout matches options.readyPattern (default
 * /serving/); rejects, with the tails of stdout and stderr, if it exits first or times out (the
 * process is killed then).
 */
export async function startSmmf(args: string[], options: StartSmmfOptions = {}): Promise<SmmfProcess> {
  const readyPattern = options.readyPattern ?? /serving/;
  const timeoutMs = options.timeoutMs ?? 30_000;

  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("SMMF_")) env[key] = value;
  }
  Object.assign(env, options.env ?? {});

  const root = options.root ?? projectRoot;
  const child = spawn(process.execPath, [resolve(root, "bin/smmf.js"), ...args], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  trackChild(child);

  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    out += chunk;
  });
  child.stderr!.on("data", (chunk: string) => {
    err += chunk;
  });

  const spawnError = new Promise<Error>((resolvePromise) => child.once("error", resolvePromise));
  const exited = waitForExit(child);

  const kill = async (): Promise<ExitInfo> => {
    if (isRunning(child)) child.kill("SIGKILL");
    return exited;
  };
  const stop = async (stopTimeoutMs = 10_000): Promise<ExitInfo> => {
    if (!isRunning(child)) return exited;
    child.kill("SIGTERM");
    const timer = setTimeout(() => {
      if (isRunning(child)) child.kill("SIGKILL");
    }, stopTimeoutMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };

  const describe = (why: string): Error =>
    new Error(
      `smmf ${args.join(" ")}: ${why}\n--- stdout (tail) ---\n${tail(out)}\n--- stderr (tail) ---\n${tail(err)}`,
    );

  await new Promise<void>((resolveReady, rejectReady) => {
    let finished = false;
    const finish = (error?: Error): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      child.stdout!.off("data", check);
      if (error) rejectReady(error);
      else resolveReady();
    };
    const check = (): void => {
      if (readyPattern.test(out)) finish();
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void kill(); // "exited" below then reports the timeout, with all the output there was
    }, timeoutMs);
    child.stdout!.on("data", check);
    void exited.then((info) => {
      if (timedOut) {
        finish(describe(`no output matching ${readyPattern} within ${timeoutMs} ms (killed)`));
        return;
      }
      // Output written just before exiting may satisfy the pattern; check once more.
      check();
      finish(describe(`exited before ready (code ${info.code}, signal ${info.signal})`));
    });
    void spawnError.then((error) => finish(describe(`failed to start: ${error.message}`)));
  });

  return {
    child,
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    signal: (sig) => {
      if (isRunning(child)) child.kill(sig);
    },
    exited,
    stop,
    kill,
  };
}
