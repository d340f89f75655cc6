import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectRoot } from "../helpers/testModel.js";

const run = promisify(execFile);

// bin/smmf.js runs dist/ when it is current, and the TypeScript sources (through tsx) in a checkout whose
// dist/ is missing or older than a source file. A copy of the project's bin/, src/ and dist/ (node_modules
// linked) is edited here to tell which one ran.
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "smmf-bin-"));
  for (const entry of ["bin", "src", "dist", "package.json"]) cpSync(join(projectRoot, entry), join(dir, entry), { recursive: true });
  symlinkSync(join(projectRoot, "node_modules"), join(dir, "node_modules"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const help = async () => (await run(process.execPath, [join(dir, "bin", "smmf.js"), "--help"], { cwd: dir, timeout: 30_000 })).stdout;

function mark(file: string, from: string, to: string, mtime: Date): void {
  writeFileSync(file, readFileSync(file, "utf8").replace(from, to));
  utimesSync(file, mtime, mtime);
}

describe("bin/smmf.js", () => {
  it("runs dist/ when it was built after the last change to src/", async () => {
    const past = new Date(Date.now() - 60_000);
    mark(join(dir, "src", "cli", "main.ts"), "Usage: smmf", "Usage: smmf", past); // untouched text, older
    utimesSync(join(dir, "dist", ".built"), new Date(), new Date());
    mark(join(dir, "dist", "cli", "main.js"), "Usage: smmf <command>", "Usage: smmf-from-dist <command>", new Date());
    expect(await help()).toContain("Usage: smmf-from-dist <command>");
  });

  it("runs the sources through tsx when one is newer than dist/ (an edit takes effect without a build)", async () => {
    mark(join(dir, "src", "cli", "main.ts"), "Usage: smmf <command>", "Usage: smmf-from-src <command>", new Date(Date.now() + 60_000));
    expect(await help()).toContain("Usage: smmf-from-src <command>");
  });

  it("without dist/ and without tsx, says to build", async () => {
    rmSync(join(dir, "dist"), { recursive: true });
    rmSync(join(dir, "node_modules"));
    const err = await run(process.execPath, [join(dir, "bin", "smmf.js"), "--help"], { cwd: dir, timeout: 30_000 }).catch((e: { stderr: string; code: number }) => e);
    expect(err).toMatchObject({ code: 1, stderr: expect.stringContaining("run npm run build") });
  });
});
