import { spawn, type ChildProcess } from "node:child_process";
import { which } from "./sys.js";

export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

export interface SpawnOptions {
  /** The network namespace to run in (`ip netns exec`). */
  netns: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** A name for messages, e.g. "wrk1". */
  name: string;
}

/** One line a process wrote, numbered in order over both streams. */
export interface OutputLine {
  seq: number;
  stream: "stdout" | "stderr";
  text: string;
  /** Date.now() when it arrived. */
  at: number;
}

const MAX_LINES = 20_000;

/**
 * A process of the rig, inside a network namespace: `ip netns exec NS setpriv --pdeathsig KILL -- PROGRAM ...`.
 * `ip netns exec` and setpriv exec the program, so `pid` is the program's own. It dies with its parent (the
 * process that started the rig) even when that one is SIGKILLed. Its own process group (detached), so a Ctrl-C
 * in the terminal reaches the rig, which tears down in order. Output is kept as numbered lines that tests
 * wait on (`waitForLine`): the events a process reports, e.g. "registered again in etcd", "leading".
 */
export class RigProcess {
  readonly child: ChildProcess;
  readonly name: string;
  readonly argv: string[];
  readonly exited: Promise<ExitInfo>;
  private readonly lines: OutputLine[] = [];
  private seq = 0;
  private readonly partial = { stdout: "", stderr: "" };
  private readonly waiters = new Set<{ check: (line: OutputLine) => boolean }>();
  private exitInfo?: ExitInfo;

  constructor(argv: string[], options: SpawnOptions) {
    this.name = options.name;
    this.argv = argv;
    const ip = which("ip") ?? "ip";
    const setpriv = which("setpriv") ?? "setpriv";
    this.child = spawn(ip, ["netns", "exec", options.netns, setpriv, "--pdeathsig", "KILL", "--", ...argv], {
      cwd: options.cwd,
      env: options.env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    for (const stream of ["stdout", "stderr"] as const) {
      this.child[stream]!.setEncoding("utf8");
      this.child[stream]!.on("data", (chunk: string) => this.take(stream, chunk));
    }
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        // The pipes may hold a last line; give them a moment, never forever.
        const done = () => resolve(this.exitInfo!);
        const pipesClosed = [this.child.stdout, this.child.stderr].every((s) => !s || s.destroyed);
        if (pipesClosed) return done();
        this.child.once("close", done);
        setTimeout(done, 250);
      });
      this.child.once("error", (err) => {
        this.take("stderr", `spawn failed: ${err.message}\n`);
        this.exitInfo = { code: -1, signal: null };
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitInfo === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private take(stream: "stdout" | "stderr", chunk: string): void {
    const text = this.partial[stream] + chunk;
    const parts = text.split("\n");
    this.partial[stream] = parts.pop() ?? "";
    for (const part of parts) {
      const line: OutputLine = { seq: ++this.seq, stream, text: part, at: Date.now() };
      this.lines.push(line);
      if (this.lines.length > MAX_LINES) this.lines.splice(0, this.lines.length - MAX_LINES / 2);
      for (const waiter of [...this.waiters]) waiter.check(line);
    }
  }

  /** The number of the last line so far: pass it as `after` to wait only for lines written later. */
  mark(): number {
    return this.seq;
  }

  /** Lines kept so far (the newest MAX_LINES at most), optionally only those after a mark. */
  output(after = 0, stream?: "stdout" | "stderr"): OutputLine[] {
    return this.lines.filter((l) => l.seq > after && (!stream || l.stream === stream));
  }

  /** The last lines of output, for error messages. */
  tail(count = 40): string {
    return this.lines
      .slice(-count)
      .map((l) => l.text)
      .join("\n");
  }

  /** JSON log lines (SMMF's stderr) after a mark whose `msg` is `msg`, parsed. */
  logs(msg: string | RegExp, after = 0): { line: OutputLine; fields: Record<string, any> }[] {
    const out: { line: OutputLine; fields: Record<string, any> }[] = [];
    for (const line of this.output(after, "stderr")) {
      if (!line.text.startsWith("{")) continue;
      try {
        const fields = JSON.parse(line.text);
        if (typeof msg === "string" ? fields.msg === msg : msg.test(String(fields.msg))) out.push({ line, fields });
      } catch {
        // not JSON
      }
    }
    return out;
  }

  /**
   * Resolves with the first line after `after` that `match` accepts (a RegExp on the text, or a function);
   * rejects when the process exits first or `timeoutMs` passes, with the tail of its output.
   */
  waitForLine(match: RegExp | ((line: OutputLine) => boolean), options: { after?: number; timeoutMs?: number; what?: string } = {}): Promise<OutputLine> {
    const accept = typeof match === "function" ? match : (line: OutputLine) => match.test(line.text);
    const after = options.after ?? 0;
    const found = this.lines.find((l) => l.seq > after && accept(l));
    if (found) return Promise.resolve(found);
    const what = options.what ?? String(match);
    return new Promise((resolve, reject) => {
      const waiter = {
        check: (line: OutputLine) => {
          if (line.seq <= after || !accept(line)) return false;
          finish();
          resolve(line);
          return true;
        },
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${this.name}: no output line matching ${what} within ${options.timeoutMs} ms\n--- ${this.name} output (tail) ---\n${this.tail()}`));
      }, options.timeoutMs ?? 30_000);
      const onExit = () => {
        // A last line may have come with the exit.
        if (this.lines.some((l) => l.seq > after && accept(l))) return;
        finish();
        reject(new Error(`${this.name} exited (${JSON.stringify(this.exitInfo)}) before writing a line matching ${what}\n--- ${this.name} output (tail) ---\n${this.tail()}`));
      };
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
      void this.exited.then(() => {
        if (this.waiters.has(waiter)) onExit();
      });
    });
  }

  /** Writes a line to its stdin. */
  send(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  /** Sends a signal to the process (not its group); does nothing once it has exited. */
  signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // gone already
    }
  }

  /** SIGKILL, and wait for the exit. */
  async kill(): Promise<ExitInfo> {
    this.signal("SIGKILL");
    return this.exited;
  }

  /** SIGTERM, then SIGKILL after timeoutMs; resolves with how it ended. */
  async stop(timeoutMs = 10_000): Promise<ExitInfo> {
    if (!this.running) return this.exited;
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
