import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort, startSmmf, trackChild, type SmmfProcess } from "../test/helpers/childProcess.js";
import { projectRoot, testModelPath } from "../test/helpers/testModel.js";

/** A real `smmf serve` process for the fuzzer: the test model, API keys on, an admin key bootstrapped. */
export interface FuzzServer {
  smmf: SmmfProcess;
  port: number;
  url: string;
  keys: Record<"admin" | "reader" | "inference", string>;
  /** The server's inspector (DevTools protocol), on a loopback port: the fuzzer asks it for full GCs. */
  inspectorUrl: string;
  /** Set when the process has exited (a crash while fuzzing). */
  exited(): string | undefined;
  stop(): Promise<void>;
}

function cli(args: string[], dir: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("SMMF_")) env[k] = v;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [resolve(projectRoot, "bin/smmf.js"), ...args], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
    trackChild(child);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    child.once("error", reject);
    child.once("close", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

const SECRET = /smmf-k[0-9a-f]{12}-\S{43}/;

async function createKey(url: string, admin: string, name: string, role: string): Promise<string> {
  const res = await fetch(`${url}/api/v1/keys`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${admin}` }, body: JSON.stringify({ name, role }) });
  const body = (await res.json()) as { secret?: string };
  if (res.status !== 201 || !body.secret) throw new Error(`could not create the ${role} key: ${res.status} ${JSON.stringify(body)}`);
  return body.secret;
}

export async function startFuzzServer(): Promise<FuzzServer> {
  const dir = mkdtempSync(join(tmpdir(), "smmf-fuzz-"));
  const dataDir = join(dir, "data");
  try {
    const made = await cli(["key", "create", "admin", "--role", "admin", "--bootstrap", "--data-dir", dataDir], dir);
    const admin = SECRET.exec(made.stdout)?.[0];
    if (made.code !== 0 || !admin) throw new Error(`smmf key create --bootstrap failed (${made.code}):\n${made.stdout}\n${made.stderr}`);
    const port = await freePort();
    const smmf = await startSmmf(
      ["serve", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--gpu", "off", "--threads", "1", "--data-dir", dataDir, "--auth", "on", "--log-level", "warn", "--request-log-capture", "truncated"],
      // RSS is compared before and after the run, so it must count what the server retains:
      // - the inspector, on a free loopback port, lets the fuzzer force a full GC before reading it;
      // - glibc's mmap threshold is fixed at its default (128 KiB): left dynamic, freeing one 12 MB body raises
      //   it so that later large buffers come from the heap, whose freed top glibc then keeps (tens of MB of
      //   RSS that no live object holds, and that come and go with the order of the cases).
      { timeoutMs: 60_000, env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --inspect=127.0.0.1:0`.trim(), MALLOC_MMAP_THRESHOLD_: "131072" } },
    );
    const inspectorUrl = /ws:\/\/127\.0\.0\.1:\d+\/[0-9a-f-]+/.exec(smmf.stderr())?.[0];
    if (!inspectorUrl) {
      await smmf.stop();
      throw new Error(`the server did not print its inspector address:\n${smmf.stderr().slice(-2000)}`);
    }
    let exitedWith: string | undefined;
    void smmf.exited.then((info) => (exitedWith = `exited with code ${info.code}, signal ${info.signal}`));
    const url = `http://127.0.0.1:${port}`;
    const keys = { admin, reader: await createKey(url, admin, "fuzz-reader", "API_KEY_ROLE_READER"), inference: await createKey(url, admin, "fuzz-inference", "API_KEY_ROLE_INFERENCE") };
    return {
      smmf,
      port,
      url,
      keys,
      inspectorUrl,
      exited: () => exitedWith,
      async stop() {
        await smmf.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
