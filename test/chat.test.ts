import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./helpers/childProcess.js";
import { startTestServer, type TestServer } from "./helpers/startTestServer.js";
import { projectRoot } from "./helpers/testModel.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
});

function chat(args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [resolve(projectRoot, "bin/smmf.js"), "chat", ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      fail(new Error(`smmf chat did not finish: ${stdout} ${stderr}`));
    }, 30_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

describe("smmf chat", () => {
  it("streams one answer per line typed and exits 0 at the end of input", async () => {
    const r = await chat(["stories260K", "--url", server.url, "--max-tokens", "8", "--system", "Tell stories."], "Hello\n\nTell me more\n");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const answers = r.stdout.split("\n").filter((l) => l.length > 0);
    expect(answers.length).toBeGreaterThanOrEqual(2);
  });

  it("exits 3 for an unknown model, naming it", async () => {
    const r = await chat(["nope", "--url", server.url], "Hello\n");
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("nope");
  });

  it("exits 1 when the gateway cannot be reached, and 2 on bad usage", async () => {
    const port = await freePort();
    const down = await chat(["stories260K", "--url", `http://127.0.0.1:${port}`], "Hello\n");
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach/);
    const usage = await chat([], "");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/Usage: smmf chat MODEL/);
    const help = await chat(["--help"], "");
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Exit codes/);
  });
});
