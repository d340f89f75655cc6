import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** `smmf serve ...args --port P` on a free port, as a child process; resolves once it serves. */
export async function startServe(name: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ child: ChildProcess; port: number }> {
  const probe = http.createServer();
  await new Promise<void>((ok) => probe.listen(0, "127.0.0.1", ok));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((ok) => probe.close(ok));
  const child = spawn(process.execPath, [resolve(root, "bin/smmf.js"), "serve", ...args, "--port", String(port)], { stdio: ["ignore", "pipe", "inherit"], env });
  await new Promise<void>((ok, fail) => {
    let out = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("SMMF is serving")) ok();
    });
    child.once("exit", (code) => fail(new Error(`smmf serve (${name}) exited with ${code}`)));
  });
  return { child, port };
}
