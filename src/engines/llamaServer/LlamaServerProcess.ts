import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SmmfError } from "../../errors/SmmfError.js";

/** Lines of llama-server's output kept to explain a failure. */
const TAIL_LINES = 40;
/** How long a model may take to load before the start fails. */
const LOAD_TIMEOUT_MS = 10 * 60_000;
/** How long llama-server has to exit after SIGTERM before it is killed. */
const STOP_GRACE_MS = 5_000;

/** `setpriv`, when the machine has it: the child then dies with the worker, even one killed with SIGKILL. */
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

/** GET `path` on the unix socket; resolves with the status (0: nothing listens yet). */
function status(socketPath: string, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = get({ socketPath, path, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(0));
  });
}

/**
 * One llama-server child process, listening on a unix socket in a fresh private folder (mode 0700: no other
 * user, and nothing off the machine, can reach it). It gets a minimal environment (none of the worker's
 * secrets, and no LLAMA_ARG_* variable that would override its flags), and dies with the worker.
 */
export class LlamaServerProcess {
  readonly socketPath: string;
  private child?: ChildProcess;
  private readonly tail: string[] = [];
  private partial = "";
  private exitListener?: (code: number | null, signal: NodeJS.Signals | null) => void;
  private stopping = false;

  private readonly args: readonly string[];

  private constructor(
    private readonly dir: string,
    private readonly binary: string,
    argsFor: (socketPath: string) => string[],
  ) {
    this.socketPath = join(dir, "llama-server.sock");
    this.args = argsFor(this.socketPath);
  }

  /** A server (not started yet) of `binary` with the flags `argsFor` gives for its socket's path. */
  static async create(binary: string, argsFor: (socketPath: string) => string[]): Promise<LlamaServerProcess> {
    return new LlamaServerProcess(await mkdtemp(join(tmpdir(), "smmf-llama-server-")), binary, argsFor);
  }

  /** The process id while it runs. */
  get pid(): number | undefined {
    return this.child?.exitCode === null ? this.child.pid : undefined;
  }

  /** The last lines llama-server wrote, and the error ones among them. */
  lastLines(): { all: string[]; errors: string[] } {
    const all = this.partial ? [...this.tail, this.partial] : [...this.tail];
    return { all, errors: all.filter((l) => /\b(error|failed|fail|unable|cannot|invalid)\b/i.test(l)) };
  }

  /** Called once when the running server exits without being asked to. */
  onExit(listener: (code: number | null, signal: NodeJS.Signals | null) => void): void {
    this.exitListener = listener;
  }

  private keep(chunk: Buffer): void {
    const lines = (this.partial + chunk.toString("utf8")).split("\n");
    this.partial = lines.pop()!.slice(-1000);
    for (const line of lines) {
      if (!line.trim()) continue;
      this.tail.push(line.slice(0, 1000));
      if (this.tail.length > TAIL_LINES) this.tail.shift();
    }
  }

  /** Starts the server and resolves once it has loaded its model and answers /health. */
  async start(signal?: AbortSignal): Promise<void> {
    this.stopping = false;
    this.tail.length = 0;
    this.partial = "";
    await rm(this.socketPath, { force: true });
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8" };
    const [command, args] = SETPRIV ? [SETPRIV, ["--pdeathsig", "KILL", "--", this.binary, ...this.args]] : [this.binary, [...this.args]];
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const onData = (chunk: Buffer) => this.keep(chunk);
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    // Until it is ready, an exit fails the start; after, it is news for the exit listener.
    let ready = false;
    let exited!: (why: string) => void;
    const exit = new Promise<string>((resolve) => (exited = resolve));
    child.once("error", (err) => exited(`could not start ${this.binary}: ${err.message}`));
    child.once("exit", (code, sig) => {
      if (!ready) exited(`llama-server exited (${sig ?? `code ${code}`}) while loading`);
      else if (this.child === child && !this.stopping) this.exitListener?.(code, sig);
    });
    const deadline = Date.now() + LOAD_TIMEOUT_MS;
    let wait = 20;
    for (;;) {
      if (signal?.aborted) {
        await this.stop();
        throw new SmmfError("cancelled", "the instance load was cancelled");
      }
      const outcome = await Promise.race([status(this.socketPath, "/health"), exit]);
      if (typeof outcome === "string") {
        const { errors, all } = this.lastLines();
        const why = (errors.length > 0 ? errors : all).slice(-3).join(" | ");
        throw new SmmfError("failed_precondition", `${outcome}${why ? `: ${why}` : ""}`);
      }
      if (outcome === 200) {
        ready = true;
        return;
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new SmmfError("deadline_exceeded", `llama-server did not load its model within ${LOAD_TIMEOUT_MS / 1000} s`);
      }
      // Loading (503) or not listening yet: the model's size decides how long; look again soon.
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 250);
    }
  }

  /** Stops the server (SIGTERM, then SIGKILL after a grace), waiting for it to exit. */
  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
      await gone;
      clearTimeout(timer);
    }
  }

  /** Stops the server and removes its socket folder. */
  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
