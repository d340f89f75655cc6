// deploy/systemd: the units of the bare-metal install (worker, gateway, controller) and their example
// environment files. systemd-analyze checks the units' syntax and options (verify) and their sandboxing
// (security --offline); the rest checks what systemd cannot know: that ExecStart= runs a real smmf command
// with flags it takes, that every SMMF_* variable is one SMMF reads (for that command, with a value it accepts),
// that stopping leaves the drain its grace, and that SMMF writes only where the sandbox lets it.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SECTIONS, SETTINGS, type Command, type Setting } from "../../src/config/settings.js";
import { parseSettingsArgs } from "../../src/config/settingsCli.js";
import { loadConfig } from "../../src/config/loadConfig.js";
import { projectRoot } from "../helpers/testModel.js";

const ROWS: readonly Setting[] = SETTINGS;
const DIR = join(projectRoot, "deploy", "systemd");
const ROLES = ["worker", "gateway", "controller"] as const satisfies readonly Command[];
type Role = (typeof ROLES)[number];
const NODE = "/usr/bin/node";
const INSTALL = "/opt/smmf";
/** SMMF_* variables SMMF reads that are not settings (src/config/settings.ts): each is checked to be read in src/. */
const NOT_SETTINGS = ["SMMF_LLAMA_SERVER"];
/** Above this `systemd-analyze security` exposure (0–100; the units score 17–19), a hardening option is gone. */
const EXPOSURE_THRESHOLD = 25;
/** How much longer than the drain's grace systemd waits before SIGKILL, at least. */
const STOP_MARGIN_MS = 5_000;

// ---- Units and environment files.

type Unit = Record<string, Array<[string, string]>>;

function parseUnit(text: string): Unit {
  const unit: Unit = {};
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    expect(line.endsWith("\\"), `continued lines are not used here: ${line}`).toBe(false);
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1];
      unit[section] ??= [];
      continue;
    }
    const eq = line.indexOf("=");
    expect(eq, `key=value: ${line}`).toBeGreaterThan(0);
    unit[section].push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}
/** Every value of a key in a section (systemd's lists: each line adds, an empty value resets). */
function values(unit: Unit, section: string, key: string): string[] {
  return (unit[section] ?? []).filter(([k]) => k === key).map(([, v]) => v);
}
function value(unit: Unit, section: string, key: string): string | undefined {
  return values(unit, section, key).at(-1);
}
/** Environment= lines: NAME=value (one per line here; quoting is not used). */
function unitEnvironment(unit: Unit): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of values(unit, "Service", "Environment")) {
    for (const assignment of line.split(/\s+/)) {
      const eq = assignment.indexOf("=");
      env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
    }
  }
  return env;
}
/** systemd time spans used here: "45", "45s", "1min 30s", "500ms". */
function seconds(span: string): number {
  let total = 0;
  for (const m of span.matchAll(/(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h)?/g)) {
    const n = Number(m[1]);
    total += m[2] === "ms" ? n / 1000 : m[2] === "min" || m[2] === "m" ? n * 60 : m[2] === "h" ? n * 3600 : n;
  }
  return total;
}

interface EnvFile {
  /** NAME=value lines in effect. */
  set: Record<string, string>;
  /** `#NAME=value` lines: examples an operator may uncomment. */
  examples: Record<string, string>;
  /** Every SMMF_* name the file mentions, comments included. */
  mentioned: string[];
}
function parseEnvFile(text: string, where: string): EnvFile {
  const file: EnvFile = { set: {}, examples: {}, mentioned: [...new Set(text.match(/\bSMMF_[A-Z0-9_]+/g) ?? [])] };
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const example = /^#\s?([A-Z][A-Z0-9_]*)=(\S*)$/.exec(line);
    if (example) {
      file.examples[example[1]] = example[2];
      continue;
    }
    if (!line || line.startsWith("#")) continue;
    // systemd's EnvironmentFile=: NAME=value; no `export`, no spaces around '='.
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/.exec(line);
    expect(m, `${where}: not a NAME=value line: ${line}`).not.toBeNull();
    file.set[m![1]] = m![2];
  }
  return file;
}

function rowOfFlag(flag: string): Setting | undefined {
  return ROWS.find((r) => r.flag === flag);
}
function rowOfEnv(name: string): Setting | undefined {
  return ROWS.find((r) => r.env.includes(name));
}
const SOURCES = (() => {
  const read = (dir: string): string =>
    readdirSync(dir, { withFileTypes: true })
      .map((e) => (e.isDirectory() ? read(join(dir, e.name)) : e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") ? readFileSync(join(dir, e.name), "utf8") : ""))
      .join("\n");
  return read(join(projectRoot, "src"));
})();

/** Values through SMMF's own loader: a wrong number, enum, list item or URL throws. */
function loadsWith(flags: string[], env: Record<string, string>, where: string): void {
  const cwd = mkdtempSync(join(tmpdir(), "smmf-systemd-"));
  try {
    loadConfig(parseSettingsArgs(flags).flags, env, cwd);
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

const units = Object.fromEntries(
  ROLES.map((role) => {
    const path = join(DIR, `smmf-${role}.service`);
    return [role, { path, text: existsSync(path) ? readFileSync(path, "utf8") : "" }];
  }),
) as Record<Role, { path: string; text: string }>;

/** ExecStart= of a unit: node, bin/smmf.js under /opt/smmf, the role, its flags. */
function execStart(role: Role): { argv: string[]; flags: string[] } {
  const unit = parseUnit(units[role].text);
  const lines = values(unit, "Service", "ExecStart");
  expect(lines.length, `smmf-${role}.service: one ExecStart=`).toBe(1);
  const argv = lines[0].split(/\s+/);
  expect(argv.slice(0, 3), `smmf-${role}.service: ExecStart=`).toEqual([NODE, `${INSTALL}/bin/smmf.js`, role]);
  return { argv, flags: argv.slice(3) };
}

// ---- systemd-analyze, on copies whose ExecStart= points at this machine's node and this checkout.

const work = mkdtempSync(join(tmpdir(), "smmf-units-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let copies = 0;

function systemdAnalyze(): string {
  const found = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" });
  if (found.error || found.status !== 0) {
    throw new Error(
      "systemd-analyze is not on PATH: the systemd units (deploy/systemd) cannot be verified. Install it — Debian/Ubuntu: " +
        "apt-get install -y systemd (bash scripts/ensure-tools.sh does it as root) — and run the tests again.",
    );
  }
  return found.stdout.split("\n")[0];
}

/**
 * A copy of a unit for systemd-analyze (same file name: verify wants a valid unit name), ExecStart='s program and
 * script rewritten to this machine's node (verify fails when the program is missing; node need not be
 * /usr/bin/node here) and this checkout's bin/smmf.js. Nothing else changes: User=smmf stays (verify does not
 * resolve users; where a systemd version does, the message below says so).
 */
function testCopy(name: string, text: string): string {
  const dir = join(work, String(copies++));
  expect(text, `${name}: ExecStart=${NODE} ${INSTALL}/bin/smmf.js ...`).toContain(`ExecStart=${NODE} ${INSTALL}/bin/smmf.js `);
  const copy = text.replace(`ExecStart=${NODE} ${INSTALL}/bin/smmf.js `, `ExecStart=${process.execPath} ${join(projectRoot, "bin", "smmf.js")} `);
  const path = join(dir, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path, copy);
  return path;
}

/** What `systemd-analyze verify` says about a unit file: [] when it is clean. Its exit status is 0 on unknown
 * keys and unparsable values ("..., ignoring"), so its messages about the file count too. */
function verify(path: string): string[] {
  const name = posix.basename(path);
  const result = spawnSync("systemd-analyze", ["verify", "--man=no", path], { encoding: "utf8", cwd: posix.dirname(path), env: { ...process.env, SYSTEMD_LOG_COLOR: "0" } });
  const messages = `${result.stdout}\n${result.stderr}`.split("\n").filter((l) => l.includes(name));
  if (result.status !== 0) messages.push(`systemd-analyze verify exited ${result.status}: ${result.stderr.trim()}`);
  return messages;
}

describe("deploy/systemd units", () => {
  it("exist, with an example environment file each", () => {
    for (const role of ROLES) {
      expect(existsSync(units[role].path), units[role].path).toBe(true);
      expect(existsSync(join(DIR, `${role}.env.example`)), `${role}.env.example`).toBe(true);
    }
  });

  it("pass systemd-analyze verify", () => {
    systemdAnalyze();
    for (const role of ROLES) expect(verify(testCopy(`smmf-${role}.service`, units[role].text)).join("\n"), `smmf-${role}.service`).toBe("");
  });

  it("would fail verify with a misspelt directive, a bad value or a missing program (the check above works)", () => {
    systemdAnalyze();
    const text = units.worker.text;
    const broken = {
      misspelt: text.replace(/^ProtectClock=yes$/m, "ProtectClok=yes"),
      badValue: text.replace(/^Restart=on-failure$/m, "Restart=sometimes"),
      badTime: text.replace(/^TimeoutStopSec=.*$/m, "TimeoutStopSec=4x5"),
    };
    for (const [what, variant] of Object.entries(broken)) {
      expect(variant, what).not.toBe(text);
      expect(verify(testCopy("smmf-worker.service", variant)).length, what).toBeGreaterThan(0);
    }
    const missing = join(work, "missing", "smmf-worker.service");
    mkdirSync(posix.dirname(missing), { recursive: true });
    writeFileSync(missing, text.replace(`ExecStart=${NODE} `, "ExecStart=/nonexistent/node "));
    expect(verify(missing).length, "a missing program").toBeGreaterThan(0);
  });

  it(`are sandboxed: systemd-analyze security --offline rates each at most ${EXPOSURE_THRESHOLD / 10}`, () => {
    const version = Number(/systemd (\d+)/.exec(systemdAnalyze())?.[1]);
    expect(version, "systemd-analyze security --offline and --threshold need systemd 250 or later (Debian 12 has 252)").toBeGreaterThanOrEqual(250);
    for (const role of ROLES) {
      const path = testCopy(`smmf-${role}.service`, units[role].text);
      const result = spawnSync("systemd-analyze", ["security", "--offline=yes", `--threshold=${EXPOSURE_THRESHOLD}`, "--no-pager", path], { encoding: "utf8", cwd: posix.dirname(path) });
      const level = /Overall exposure level for [^:]+: ([\d.]+)/.exec(result.stdout)?.[1];
      expect(result.status, `smmf-${role}.service: exposure ${level}\n${result.stderr}`).toBe(0);
    }
  });

  it("keep the hardening options, and leave out those Node or a GPU worker cannot run with", () => {
    const required: Record<string, RegExp> = {
      NoNewPrivileges: /^yes$/,
      ProtectSystem: /^strict$/,
      ProtectHome: /^(yes|read-only|tmpfs)$/,
      PrivateTmp: /^yes$/,
      ProtectKernelTunables: /^yes$/,
      ProtectKernelModules: /^yes$/,
      ProtectKernelLogs: /^yes$/,
      ProtectControlGroups: /^yes$/,
      ProtectClock: /^yes$/,
      ProtectHostname: /^yes$/,
      RestrictNamespaces: /^yes$/,
      RestrictRealtime: /^yes$/,
      RestrictSUIDSGID: /^yes$/,
      RestrictAddressFamilies: /^AF_INET AF_INET6 AF_UNIX$/,
      LockPersonality: /^yes$/,
      CapabilityBoundingSet: /^$/,
      AmbientCapabilities: /^$/,
      SystemCallArchitectures: /^native$/,
      // @pkey: V8 calls pkey_alloc (seen with strace), outside @system-service.
      SystemCallFilter: /^@system-service @pkey$/,
      SystemCallErrorNumber: /^EPERM$/,
      User: /^smmf$/,
    };
    for (const role of ROLES) {
      const unit = parseUnit(units[role].text);
      for (const [key, want] of Object.entries(required)) expect(value(unit, "Service", key), `smmf-${role}.service: ${key}=`).toMatch(want);
      // V8's JIT needs writable+executable memory; Node reads /proc/stat and /proc/cpuinfo.
      expect(value(unit, "Service", "MemoryDenyWriteExecute") ?? "no", `smmf-${role}.service: MemoryDenyWriteExecute= stops V8`).toMatch(/^(no|false|0)$/);
      expect(value(unit, "Service", "ProcSubset") ?? "all", `smmf-${role}.service: ProcSubset=`).toBe("all");
      if (role === "worker") expect(value(unit, "Service", "PrivateDevices") ?? "no", "a GPU worker needs /dev/nvidia*, /dev/dri").toMatch(/^(no|false|0)$/);
      else expect(value(unit, "Service", "PrivateDevices"), `smmf-${role}.service: PrivateDevices=`).toBe("yes");
    }
  });

  it("restart on failure, stop with SIGTERM to node alone, and wait longer than the drain's grace", () => {
    for (const role of ROLES) {
      const unit = parseUnit(units[role].text);
      const where = `smmf-${role}.service`;
      expect(value(unit, "Service", "Restart"), where).toBe("on-failure");
      expect(value(unit, "Service", "KillSignal"), where).toBe("SIGTERM");
      // The llama-server children must not get SIGTERM together with the worker they serve during its drain.
      expect(value(unit, "Service", "KillMode"), where).toBe("mixed");
      expect(value(unit, "Service", "Type"), where).toBe("exec");
      const timeout = seconds(value(unit, "Service", "TimeoutStopSec") ?? "90") * 1000;
      // The grace, from wherever it may be set: ExecStart's flag, the unit's Environment=, the env file (in
      // effect or as an example), else the default.
      const flags = parseSettingsArgs(execStart(role).flags).flags as Record<string, unknown>;
      const envFile = parseEnvFile(readFileSync(join(DIR, `${role}.env.example`), "utf8"), `${role}.env.example`);
      const candidates = [flags["shutdown-grace-ms"], unitEnvironment(unit).SMMF_SHUTDOWN_GRACE_MS, envFile.set.SMMF_SHUTDOWN_GRACE_MS, envFile.examples.SMMF_SHUTDOWN_GRACE_MS, rowOfFlag("shutdown-grace-ms")!.default];
      for (const grace of candidates.filter((g) => g !== undefined).map(Number)) {
        expect(timeout, `${where}: TimeoutStopSec= (${timeout / 1000} s) must exceed the shutdown grace (${grace} ms) by ${STOP_MARGIN_MS} ms`).toBeGreaterThanOrEqual(grace + STOP_MARGIN_MS);
      }
    }
  });

  it("run `node /opt/smmf/bin/smmf.js <role>` with flags and variables that role takes, and values it accepts", () => {
    for (const role of ROLES) {
      const where = `smmf-${role}.service`;
      const unit = parseUnit(units[role].text);
      const { flags } = execStart(role);
      for (const word of flags.filter((w) => w.startsWith("--"))) {
        const row = rowOfFlag(word.slice(2).split("=")[0]);
        expect(row, `${where}: ${word} is not a flag of SMMF (src/config/settings.ts)`).toBeDefined();
        expect(SECTIONS[row!.section].commands, `${where}: ${word} does not apply to smmf ${role}`).toContain(role);
      }
      const env = unitEnvironment(unit);
      for (const name of Object.keys(env).filter((n) => n.startsWith("SMMF_"))) {
        const row = rowOfEnv(name);
        expect(row, `${where}: Environment=${name} is not a variable of SMMF (src/config/settings.ts)`).toBeDefined();
        expect(SECTIONS[row!.section].commands, `${where}: ${name} does not apply to smmf ${role}`).toContain(role);
      }
      expect(values(unit, "Service", "EnvironmentFile"), `${where}: EnvironmentFile=`).toEqual([`-/etc/smmf/${role}.env`]);
      loadsWith(flags, env, where);
      // The real CLI takes that command line (strict flag parsing; --help stops before serving).
      const result = spawnSync(process.execPath, [join(projectRoot, "bin", "smmf.js"), role, ...flags, "--help"], { encoding: "utf8", timeout: 20_000 });
      expect(result.status, `${where}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^Usage: smmf ${role}`));
    }
  });

  it("let SMMF write where it writes: the data dir in StateDirectory=, the worker's build cache in CacheDirectory=", () => {
    for (const role of ROLES) {
      const where = `smmf-${role}.service`;
      const unit = parseUnit(units[role].text);
      const states = values(unit, "Service", "StateDirectory").flatMap((v) => v.split(/\s+/)).map((d) => posix.join("/var/lib", d));
      const writable = [...states, ...values(unit, "Service", "ReadWritePaths").flatMap((v) => v.split(/\s+/)).map((p) => p.replace(/^-/, ""))];
      const under = (path: string, dirs: string[]) => dirs.some((d) => path === d || path.startsWith(`${d}/`));
      const flags = parseSettingsArgs(execStart(role).flags).flags as Record<string, unknown>;
      const dataDir = flags["data-dir"];
      expect(typeof dataDir, `${where}: --data-dir in ExecStart= (a unit's own directory)`).toBe("string");
      expect(under(dataDir as string, writable), `${where}: --data-dir ${String(dataDir)} is read-only under ProtectSystem=strict (writable: ${writable.join(", ")})`).toBe(true);
      expect(value(unit, "Service", "WorkingDirectory"), `${where}: WorkingDirectory=`).toBe("/var/lib/smmf");
      if (role === "worker") {
        const env = unitEnvironment(unit);
        const caches = values(unit, "Service", "CacheDirectory").flatMap((v) => v.split(/\s+/)).map((d) => posix.join("/var/cache", d));
        expect(env.XDG_CACHE_HOME, "llama-server builds go to $XDG_CACHE_HOME/smmf").toBeDefined();
        expect(under(posix.join(env.XDG_CACHE_HOME, "smmf"), caches) || caches.includes(env.XDG_CACHE_HOME), `XDG_CACHE_HOME=${env.XDG_CACHE_HOME} is not a CacheDirectory= (${caches.join(", ")})`).toBe(true);
        expect(under(env.SMMF_MODEL_DIR ?? "", states), "the model dir is readable by smmf (a StateDirectory=)").toBe(true);
      }
    }
  });
});

describe("deploy/systemd/*.env.example", () => {
  it("name only SMMF_* variables SMMF reads", () => {
    for (const name of NOT_SETTINGS) expect(SOURCES, `${name} is read in src/`).toContain(name);
    for (const role of ROLES) {
      const where = `${role}.env.example`;
      const file = parseEnvFile(readFileSync(join(DIR, where), "utf8"), where);
      expect(file.mentioned.length, where).toBeGreaterThan(0);
      for (const name of file.mentioned) expect(rowOfEnv(name) !== undefined || NOT_SETTINGS.includes(name), `${where}: ${name} is not a variable of SMMF (src/config/settings.ts)`).toBe(true);
    }
  });

  it("set, and suggest, only variables of their role, with values SMMF accepts", () => {
    for (const role of ROLES) {
      const where = `${role}.env.example`;
      const file = parseEnvFile(readFileSync(join(DIR, where), "utf8"), where);
      for (const name of [...Object.keys(file.set), ...Object.keys(file.examples)]) {
        expect(name, `${where}: only SMMF_* variables`).toMatch(/^SMMF_/);
        const row = rowOfEnv(name);
        if (row) expect(SECTIONS[row.section].commands, `${where}: ${name} does not apply to smmf ${role}`).toContain(role);
      }
      const unit = parseUnit(units[role].text);
      const flags = execStart(role).flags;
      // As installed (the unit's Environment=, overridden by the file), and with every example uncommented.
      loadsWith(flags, { ...unitEnvironment(unit), ...file.set }, where);
      loadsWith(flags, { ...unitEnvironment(unit), ...file.set, ...file.examples }, `${where} (examples uncommented)`);
      expect(file.set.SMMF_ETCD, `${where}: SMMF_ETCD (the distributed mode)`).toBeDefined();
      expect(file.set.SMMF_CLUSTER_SECRET_FILE, `${where}: the cluster credential`).toBeDefined();
    }
  });
});
