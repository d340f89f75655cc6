// `smmf serve|worker|gateway|controller` as real processes: --help made from the settings table, and settings
// errors before anything starts.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SECTIONS, SETTINGS, type Setting } from "../config/settings.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The environment without SMMF_* settings, so that the caller's shell cannot change what runs. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SMMF_") && !k.startsWith("OTEL_")));
}

function smmf(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: ROOT, env: cleanEnv(), timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("smmf COMMAND --help", () => {
  it("serve --help lists the flags of serve's sections, not the controller's", async () => {
    const r = await smmf(["serve", "--help"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: smmf serve \[flags\]/);
    for (const row of SETTINGS as readonly Setting[]) {
      if (!row.flag) continue;
      const listed = new RegExp(`^  --${row.flag}( |$)`, "m").test(r.stdout);
      expect(listed, `--${row.flag}`).toBe(SECTIONS[row.section].commands.includes("serve"));
    }
    expect(r.stdout).toContain("--tls-cert FILE");
    expect(r.stdout).toContain("SMMF_MAX_CONNECTIONS");
  });

  it("controller --help lists the controller's quotas", async () => {
    const r = await smmf(["controller", "-h"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("--max-replicas N");
    expect(r.stdout).toContain("--max-models N");
    expect(r.stdout).not.toContain("--max-instances-per-worker");
  });

  it("refuses a bad setting with its name and range, exit code 2, before starting", async () => {
    const r = await smmf(["serve", "--max-connections", "0", "--no-models"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("smmf: --max-connections must be an integer from 1 to 1000000; got '0'\n");
    expect(r.stdout).toBe("");
  });
});
