// `smmf serve` as a real child process: startup banner, the OpenAI API through the official client,
// graceful SIGTERM, a helpful message for a missing model file, and the CLI's usage and exit codes.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import OpenAI from "openai";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { projectRoot, testModelPath } from "./helpers/testModel.js";

const BIN = resolve(projectRoot, "bin/smmf.js");
const STARTUP_TIMEOUT_MS = 30_000;

interface Child {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

/** The environment without SMMF_* settings (so that the caller's shell cannot change what the test runs), quiet logs. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("SMMF_")) env[k] = v;
  env.SMMF_LOG_LEVEL = "warn";
  return env;
}

function smmf(args: string[]): Child {
  const proc = spawn(process.execPath, [BIN, ...args], { cwd: projectRoot, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
  children.add(proc);
  let out = "";
  let err = "";
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolvePromise) => {
    proc.once("exit", (code, signal) => {
      children.delete(proc);
      resolvePromise({ code, signal });
    });
  });
  return { proc, stdout: () => out, stderr: () => err, exited };
}

function killAll(): void {
  for (const proc of children) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    children.delete(proc);
  }
}

/** Waits for the process to exit, failing with its output when it takes longer than `ms`. */
async function exitWithin(child: Child, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`smmf did not exit within ${ms} ms\n--- stdout ---\n${child.stdout()}\n--- stderr ---\n${child.stderr()}`)),
      ms,
    );
  });
  try {
    return await Promise.race([child.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for a stdout line containing `text`; fails with stdout and stderr when the process exits or time runs out. */
function waitForLine(child: Child, text: string, ms: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const describeOutput = () => `\n--- stdout ---\n${child.stdout()}\n--- stderr ---\n${child.stderr()}`;
    const check = () => {
      const line = child.stdout().split("\n").find((l) => l.includes(text));
      if (line === undefined) return;
      cleanup();
      resolvePromise(line);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`smmf did not print "${text}" within ${ms} ms${describeOutput()}`));
    }, ms);
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      cleanup();
      reject(new Error(`smmf exited (code ${code}, signal ${signal}) before printing "${text}"${describeOutput()}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.proc.stdout!.off("data", check);
      child.proc.off("exit", onExit);
    };
    child.proc.stdout!.on("data", check);
    child.proc.once("exit", onExit);
    check();
  });
}

/** A port that was free a moment ago (listen on 0, read the port, close). */
function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolvePromise(port));
    });
  });
}

/** Waits for stderr to contain `text`; fails with the output when the process exits or time runs out. */
async function waitForStderr(child: Child, text: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  await new Promise<void>((resolvePromise, reject) => {
    const check = () => {
      if (child.stderr().includes(text)) return done(resolvePromise);
      if (child.proc.exitCode !== null || child.proc.signalCode !== null || Date.now() > deadline) {
        done(() => reject(new Error(`smmf did not write "${text}" to stderr within ${ms} ms\n--- stdout ---\n${child.stdout()}\n--- stderr ---\n${child.stderr()}`)));
      }
    };
    const timer = setInterval(check, 50);
    const done = (then: () => void) => {
      clearInterval(timer);
      child.proc.stderr!.off("data", check);
      then();
    };
    child.proc.stderr!.on("data", check);
    check();
  });
}

let dataDir: string | undefined;

afterEach(() => {
  killAll();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  dataDir = undefined;
});
afterAll(() => killAll());

describe("smmf serve", () => {
  it("serves the OpenAI API and exits 0 on SIGTERM after finishing the stream still generating", async () => {
    const port = await freePort();
    dataDir = mkdtempSync(join(tmpdir(), "smmf-serve-"));
    // A grace long enough for the stream on a slow machine; info logs say when the signal is taken.
    const child = smmf(["serve", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--gpu", "off", "--threads", "1", "--data-dir", dataDir, "--shutdown-grace-ms", "300000", "--log-level", "info"]);
    const banner = await waitForLine(child, "SMMF is serving", STARTUP_TIMEOUT_MS);
    expect(banner).toContain("stories260K");
    expect(banner).toContain(`http://127.0.0.1:${port}/v1`);

    const openai = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "x", maxRetries: 0, timeout: 20_000 });
    const ids: string[] = [];
    for await (const model of openai.models.list()) ids.push(model.id);
    expect(ids).toContain("stories260K");

    const completion = await openai.chat.completions.create({
      model: "stories260K",
      messages: [{ role: "user", content: "Tell me a story." }],
      max_tokens: 16,
      temperature: 0.5,
      seed: 1,
    });
    expect(completion.object).toBe("chat.completion");
    expect(completion.model).toBe("stories260K");
    expect(completion.choices).toHaveLength(1);
    expect(completion.choices[0].message.role).toBe("assistant");
    expect(typeof completion.choices[0].message.content).toBe("string");
    expect(completion.choices[0].message.content).not.toBe("");
    expect(["stop", "length"]).toContain(completion.choices[0].finish_reason);
    expect(completion.usage?.completion_tokens).toBeGreaterThan(0);
    expect(completion.usage?.completion_tokens).toBeLessThanOrEqual(16);

    // SIGTERM while a stream is still generating (greedy, 2,000 tokens: seconds of work on the test model):
    // the stream runs to its end, then the process exits 0.
    const stream = await openai.chat.completions.create(
      {
        model: "stories260K",
        messages: [{ role: "user", content: "Tell me a long story." }],
        max_tokens: 2000,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      },
      { timeout: 300_000 },
    );
    const chunks = stream[Symbol.asyncIterator]();
    let requestId = "";
    let before = "";
    let contentChunks = 0;
    // Tokens are flowing: the first content chunks have arrived.
    while (contentChunks < 3) {
      const next = await chunks.next();
      expect(next.done, "the stream ended before three content chunks").toBe(false);
      requestId = next.value.id;
      const piece = next.value.choices[0]?.delta?.content ?? "";
      if (piece) (before += piece), contentChunks++;
    }
    const signalledAt = Date.now();
    child.proc.kill("SIGTERM");
    // The server has taken the signal: it logs that it is shutting down (and keeps the stream going).
    await waitForStderr(child, '"msg":"shutting down"', 15_000);
    let after = "";
    let finishReason: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for (;;) {
      const next = await chunks.next();
      if (next.done) break;
      after += next.value.choices[0]?.delta?.content ?? "";
      finishReason = next.value.choices[0]?.finish_reason ?? finishReason;
      usage = next.value.usage ?? usage;
    }
    expect(after).not.toBe("");
    expect(finishReason).toBe("length");
    expect(usage?.completion_tokens).toBe(2000);

    const { code, signal } = await exitWithin(child, 60_000);
    expect({ code, signal, stderr: child.stderr() }).toMatchObject({ code: 0, signal: null });
    // The server's request log (DATA_DIR/requests.db, written before it exited): the request ended after the
    // signal was sent, answered in full. So the generation was still running when the drain began.
    const db = new Database(join(dataDir, "requests.db"), { readonly: true });
    try {
      const row = db.prepare("SELECT time, latency_ms, status, completion_tokens FROM requests WHERE id = ?").get(requestId) as { time: number; latency_ms: number; status: number; completion_tokens: number } | undefined;
      expect(row).toMatchObject({ status: 200, completion_tokens: 2000 });
      expect(row!.time + row!.latency_ms).toBeGreaterThan(signalledAt);
    } finally {
      db.close();
    }
    // The port is free again.
    await new Promise<void>((resolvePromise, reject) => {
      const server = net.createServer();
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => server.close(() => resolvePromise()));
    });
  });

  it("exits non-zero with a helpful message when the model file is missing", async () => {
    const port = await freePort();
    const missing = "/nonexistent/stories260K.gguf";
    const child = smmf(["serve", "--port", String(port), "--model", `stories260K=${missing}`, "--gpu", "off", "--threads", "1"]);
    const { code } = await exitWithin(child, 15_000);
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    const stderr = child.stderr();
    expect(stderr).toContain(missing);
    expect(stderr).toContain("SMMF_MODEL_DIR");
    expect(stderr).toContain("--model");
    expect(stderr).not.toMatch(/^\s+at /m); // a message, not a stack trace
    expect(child.stdout()).not.toContain("SMMF is serving");
  });
});

describe("smmf command line", () => {
  it("prints usage and exits 0 for --help", async () => {
    const child = smmf(["--help"]);
    const { code } = await exitWithin(child, 15_000);
    expect(code).toBe(0);
    expect(child.stdout()).toContain("Usage: smmf");
    expect(child.stdout()).toContain("serve");
    expect(child.stdout()).toContain("--model NAME=PATH");
  });

  it("prints usage and exits 0 for serve --help", async () => {
    const child = smmf(["serve", "--help"]);
    const { code } = await exitWithin(child, 15_000);
    expect(code).toBe(0);
    expect(child.stdout()).toContain("Usage: smmf");
  });

  it("exits 2 for an unknown flag", async () => {
    const child = smmf(["serve", "--no-such-flag"]);
    const { code } = await exitWithin(child, 15_000);
    expect(code).toBe(2);
    expect(child.stderr()).toContain("--no-such-flag");
    expect(child.stdout()).not.toContain("SMMF is serving");
  });

  it("exits 2 for an unknown command", async () => {
    const child = smmf(["frobnicate"]);
    const { code } = await exitWithin(child, 15_000);
    expect(code).toBe(2);
    expect(child.stderr()).toContain("unknown command 'frobnicate'");
  });
});
