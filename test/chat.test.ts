import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./helpers/childProcess.js";
import { startTestServer, type TestServer } from "./helpers/startTestServer.js";
import { projectRoot } from "./helpers/testModel.js";
import { waitFor } from "./helpers/waitFor.js";

// The request log (in a temp folder, prompts and outputs kept whole) shows what the gateway received.
let dir: string;
let server: TestServer;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "smmf-chat-"));
  server = await startTestServer({ requestLog: "on", requestLogCapture: "full", dataDir: dir });
});
afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
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

  it("keeps the conversation: the second request carries the first message and the answer to it", async () => {
    // Greedy, so the answers are the same on every run; the system prompt marks this conversation in the log.
    const system = "Tell stories about a cat named Tom.";
    const question = "Hello, who are you?";
    const r = await chat(["stories260K", "--url", server.url, "--max-tokens", "8", "--temperature", "0", "--system", system], `${question}\nTell me more\n`);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);

    interface Entry {
      endpoint: string;
      stream: boolean;
      prompt: string;
      output: string;
    }
    const entries = await waitFor(
      "both turns in the request log",
      async () => {
        const { data } = (await (await fetch(`${server.url}/api/v1/requests?model=stories260K&limit=1000`)).json()) as { data: Entry[] };
        const mine = data.filter((e) => e.prompt?.includes(system));
        return mine.length >= 2 ? mine : undefined;
      },
      10_000,
    );
    expect(entries).toHaveLength(2);
    for (const e of entries) expect(e).toMatchObject({ endpoint: "chat_completions", stream: true });
    const turns = entries.map((e) => ({ messages: JSON.parse(e.prompt) as { role: string; content: string }[], output: e.output }));
    // The first request: the system prompt and the question; the second: those, the answer and the next line.
    expect(turns.map((t) => t.messages.length).sort(), JSON.stringify(turns)).toEqual([2, 4]);
    const first = turns.find((t) => t.messages.length === 2)!;
    const second = turns.find((t) => t.messages.length === 4)!;
    expect(first.messages).toEqual([
      { role: "system", content: system },
      { role: "user", content: question },
    ]);
    const answer = first.output;
    expect(answer).not.toBe("");
    // What the user saw as the first answer is what went back to the gateway as the assistant's turn.
    expect(r.stdout.startsWith(`${answer}\n`)).toBe(true);
    expect(second.messages).toEqual([
      { role: "system", content: system },
      { role: "user", content: question },
      { role: "assistant", content: answer },
      { role: "user", content: "Tell me more" },
    ]);
    expect(r.stdout).toBe(`${answer}\n${second.output}\n`);
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
