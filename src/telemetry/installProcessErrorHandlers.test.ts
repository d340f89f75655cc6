import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const MODULE = fileURLToPath(new URL("./installProcessErrorHandlers.ts", import.meta.url));
const LOGGER = fileURLToPath(new URL("./createLogger.ts", import.meta.url));

/** Runs `body` in a fresh Node process (tsx) with the handlers installed for a logger of role `smmf-test`. */
function runChild(body: string): Promise<{ code: number | null; stdout: string; lines: Record<string, unknown>[] }> {
  const script = `
    const { installProcessErrorHandlers } = await import(${JSON.stringify(MODULE)});
    const { createLogger } = await import(${JSON.stringify(LOGGER)});
    installProcessErrorHandlers(createLogger("info", "smmf-test"));
    ${body}
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  return new Promise((resolve) => {
    child.on("close", (code) => {
      const lines = stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ code, stdout, lines });
    });
  });
}

describe("installProcessErrorHandlers", () => {
  it("logs an uncaught exception as a JSON line with its message, stack and the role, then exits with code 1", async () => {
    const { code, stdout, lines } = await runChild(`
      setTimeout(() => { throw new TypeError("boom in a timer"); }, 1);
      setTimeout(() => process.stdout.write("still running\\n"), 2000);
    `);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "error", component: "smmf-test", role: "smmf-test", msg: "uncaught exception: exiting", error: "boom in a timer", errorName: "TypeError", origin: "uncaughtException" });
    expect(lines[0].stack).toMatch(/TypeError: boom in a timer\n\s+at /);
    expect(lines[0].pid).toEqual(expect.any(Number));
  });

  it("logs an unhandled rejection with context and keeps the process running", async () => {
    const { code, stdout, lines } = await runChild(`
      let seen = 0;
      // After the handler's own (installed first): once both are logged, the process is still here.
      process.on("unhandledRejection", () => {
        if (++seen === 2) setImmediate(() => { process.stdout.write("still running\\n"); process.exit(0); });
      });
      void Promise.reject(new RangeError("nobody awaited this"));
      void Promise.reject("a plain string");
    `);
    expect(code).toBe(0);
    expect(stdout).toBe("still running\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: "error", role: "smmf-test", msg: "unhandled promise rejection (the process keeps running)", error: "nobody awaited this", errorName: "RangeError" });
    expect(lines[0].stack).toContain("RangeError: nobody awaited this");
    expect(lines[1]).toMatchObject({ role: "smmf-test", error: "a plain string" });
  });

  it("installs once per process", async () => {
    const { stdout } = await runChild(`
      const again = installProcessErrorHandlers(createLogger("info", "other"));
      process.stdout.write(String(again) + " " + process.listenerCount("uncaughtException") + " " + process.listenerCount("unhandledRejection"));
    `);
    expect(stdout).toBe("false 1 1");
  });
});
