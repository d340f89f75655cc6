// deploy/Dockerfile cannot be built here (no container runtime), so this checks what can be checked without
// one: its stages and targets, that every COPY source is in the build context (and let in by .dockerignore) or
// made by the stage it comes --from, that the runtime image holds what the package ships, that ENTRYPOINT and
// CMD run a real command with flags that command takes (and values it accepts), that EXPOSE, VOLUME and the
// HEALTHCHECK agree with them, and that the Kubernetes manifests in deploy/k8s use the image the same way.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, posix, relative } from "node:path";
import { parseAllDocuments } from "yaml"; // a dependency of patch-package (and vite): always installed
import { afterAll, describe, expect, it } from "vitest";
import { COMMANDS, SECTIONS, SETTINGS, type Command, type Setting } from "../../src/config/settings.js";
import { parseSettingsArgs } from "../../src/config/settingsCli.js";
import { loadConfig } from "../../src/config/loadConfig.js";
import { projectRoot } from "../helpers/testModel.js";

const ROWS: readonly Setting[] = SETTINGS;
const DOCKERFILE = join(projectRoot, "deploy", "Dockerfile");
const K8S_DIR = join(projectRoot, "deploy", "k8s");
const PKG = JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")) as { version: string; files: string[] };
/** The port each role listens on, by the convention of README.md, deploy/k8s and deploy/systemd. */
const ROLE_PORT: Record<Command, number> = { serve: 8000, gateway: 8000, controller: 8100, worker: 7001 };
const FULL_IMAGE = `smmf/smmf:${PKG.version}`;
const LIGHT_IMAGE = `smmf/smmf:${PKG.version}-light`;

// ---- A Dockerfile parser: enough of the format for the checks below.

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  name: string;
  index: number;
  /** FROM's image, ARGs substituted. */
  base: string;
  /** The stage it is built FROM, when it is one. */
  parent?: Stage;
  instructions: Instruction[];
}

function parseDockerfile(text: string): { globalArgs: Record<string, string>; stages: Stage[] } {
  const instructions: Instruction[] = [];
  let pending = "";
  let start = 0;
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trimEnd();
    // Comment lines (and parser directives) are dropped, also inside a continued instruction, as Docker does.
    if (/^\s*#/.test(line)) continue;
    if (!pending && !line.trim()) continue;
    if (!pending) start = i + 1;
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1) + " ";
      continue;
    }
    const whole = (pending + line).trim();
    pending = "";
    const m = /^(\S+)\s*(.*)$/s.exec(whole)!;
    instructions.push({ op: m[1].toUpperCase(), args: m[2].trim(), line: start });
  }
  expect(pending, "the Dockerfile ends inside a continued line").toBe("");
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.op === "FROM") {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      expect(m, `FROM at line ${ins.line}`).not.toBeNull();
      const base = m![1].replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string, b: string) => globalArgs[a ?? b] ?? "");
      stages.push({ name: m![2] ?? String(stages.length), index: stages.length, base, parent: stages.find((s) => s.name === base), instructions: [] });
    } else if (stages.length === 0) {
      expect(ins.op, `only ARG may come before the first FROM (line ${ins.line})`).toBe("ARG");
      const [name, value = ""] = ins.args.split("=");
      globalArgs[name] = value;
    } else stages.at(-1)!.instructions.push(ins);
  }
  return { globalArgs, stages };
}

/** An exec-form (JSON array) argument list; fails on the shell form. */
function execForm(args: string, what: string): string[] {
  expect(args.startsWith("["), `${what} must use the exec form (a JSON array): ${args}`).toBe(true);
  const value = JSON.parse(args) as unknown;
  expect(Array.isArray(value) && value.every((v) => typeof v === "string"), `${what}: a JSON array of strings`).toBe(true);
  return value as string[];
}

interface Copy {
  from?: string;
  sources: string[];
  dest: string;
  line: number;
}
function copyOf(ins: Instruction): Copy {
  const words = ins.args.startsWith("[") ? (JSON.parse(ins.args) as string[]) : ins.args.split(/\s+/);
  let from: string | undefined;
  const rest: string[] = [];
  for (const w of words) {
    const flag = /^--(\w+)(?:=(.*))?$/.exec(w);
    if (flag && rest.length === 0) {
      if (flag[1] === "from") from = flag[2];
      continue;
    }
    rest.push(w);
  }
  expect(rest.length, `COPY at line ${ins.line} needs a source and a destination`).toBeGreaterThanOrEqual(2);
  return { from, sources: rest.slice(0, -1), dest: rest.at(-1)!, line: ins.line };
}

/** The stages a stage is built on, root first, itself last. */
function chain(stage: Stage): Stage[] {
  return stage.parent ? [...chain(stage.parent), stage] : [stage];
}

/** The image config a target ends with: later instructions override (USER, WORKDIR, ...) or add (EXPOSE, VOLUME). */
function imageConfig(stage: Stage) {
  const config = { user: "", workdir: "/", entrypoint: [] as string[], cmd: [] as string[], expose: new Set<number>(), volumes: new Set<string>(), healthcheck: "", stopsignal: "", labels: {} as Record<string, string>, args: {} as Record<string, string>, runs: [] as string[], copies: [] as Array<Copy & { workdir: string }> };
  for (const s of chain(stage)) {
    for (const ins of s.instructions) {
      switch (ins.op) {
        case "USER":
          config.user = ins.args;
          break;
        case "WORKDIR":
          config.workdir = posix.resolve(config.workdir, ins.args);
          break;
        case "ENTRYPOINT":
          config.entrypoint = execForm(ins.args, "ENTRYPOINT");
          config.cmd = [];
          break;
        case "CMD":
          config.cmd = execForm(ins.args, "CMD");
          break;
        case "EXPOSE":
          for (const p of ins.args.split(/\s+/)) config.expose.add(Number(p.replace(/\/tcp$/, "")));
          break;
        case "VOLUME":
          for (const v of ins.args.startsWith("[") ? execForm(ins.args, "VOLUME") : ins.args.split(/\s+/)) config.volumes.add(v);
          break;
        case "HEALTHCHECK":
          config.healthcheck = ins.args;
          break;
        case "STOPSIGNAL":
          config.stopsignal = ins.args;
          break;
        case "ARG": {
          const [name, value = ""] = ins.args.split("=");
          config.args[name] = value;
          break;
        }
        case "LABEL":
          for (const m of ins.args.matchAll(/([\w.-]+)="([^"]*)"/g)) config.labels[m[1]] = m[2].replace(/\$\{(\w+)\}/g, (_, a: string) => config.args[a] ?? "");
          break;
        case "RUN":
          config.runs.push(ins.args);
          break;
        case "COPY":
        case "ADD":
          config.copies.push({ ...copyOf(ins), workdir: config.workdir });
          break;
      }
    }
  }
  return config;
}

/** Where a COPY puts one source in the image (a folder source: the folder itself, for a trailing-slash dest). */
function destOf(copy: Copy & { workdir: string }, source: string): string {
  const dest = posix.resolve(copy.workdir, copy.dest);
  if (copy.dest.endsWith("/") && copy.sources.length > 1) return posix.join(dest, posix.basename(source.replace(/\/$/, "")));
  if (copy.dest.endsWith("/") && !source.endsWith("/") && !isDirectory(source) && !copy.from) return posix.join(dest, posix.basename(source));
  return dest;
}
function isDirectory(repoPath: string): boolean {
  return existsSync(join(projectRoot, repoPath)) && statSync(join(projectRoot, repoPath)).isDirectory();
}

// ---- .dockerignore: Docker's rules (patterns in order, the last match wins; a pattern that matches a
// folder matches what is inside; "!" lets in again).

function dockerignore(): Array<{ exclude: boolean; re: RegExp }> {
  const file = join(projectRoot, ".dockerignore");
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const exclude = !l.startsWith("!");
      const pattern = posix.normalize((exclude ? l : l.slice(1)).replace(/^\/+/, "")).replace(/\/+$/, "");
      let re = "";
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i];
        if (c === "*" && pattern[i + 1] === "*") {
          re += pattern[i + 2] === "/" ? "(?:.*/)?" : ".*";
          i += pattern[i + 2] === "/" ? 2 : 1;
        } else if (c === "*") re += "[^/]*";
        else if (c === "?") re += "[^/]";
        else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
      }
      return { exclude, re: new RegExp(`^${re}(?:/.*)?$`) };
    });
}
const IGNORE = dockerignore();
function inContext(repoPath: string): boolean {
  const path = posix.normalize(repoPath).replace(/\/+$/, "");
  let included = true;
  for (const rule of IGNORE) if (rule.re.test(path)) included = !rule.exclude;
  return included;
}
/** The files under a folder of the repository (relative paths), node_modules and .git left out. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(projectRoot, dir), { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name === ".git") continue;
    const path = posix.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

// ---- Settings: which flags each command takes.

function rowOfFlag(flag: string): Setting | undefined {
  return ROWS.find((r) => r.flag === flag);
}
function commandsOf(row: Setting): readonly Command[] {
  return SECTIONS[row.section].commands;
}
function rowOfEnv(name: string): Setting | undefined {
  return ROWS.find((r) => r.env.includes(name));
}

/** Checks an smmf command line (the words after `smmf`): a settings command, flags it takes, values it accepts. */
function checkSmmfArgs(words: string[], env: Record<string, string>, where: string): { command: Command; flags: Record<string, string | string[] | boolean> } {
  const command = words[0] as Command;
  expect(COMMANDS, `${where}: '${words[0]}' is not a command that serves (${COMMANDS.join(", ")})`).toContain(command);
  for (const w of words.slice(1)) {
    if (!w.startsWith("--")) continue;
    const flag = w.slice(2).split("=")[0];
    const row = rowOfFlag(flag);
    expect(row, `${where}: --${flag} is not a flag of SMMF (src/config/settings.ts)`).toBeDefined();
    expect(commandsOf(row!), `${where}: --${flag} does not apply to 'smmf ${command}'`).toContain(command);
  }
  for (const name of Object.keys(env).filter((n) => n.startsWith("SMMF_"))) {
    const row = rowOfEnv(name);
    expect(row, `${where}: ${name} is not an environment variable of SMMF (src/config/settings.ts)`).toBeDefined();
    expect(commandsOf(row!), `${where}: ${name} does not apply to 'smmf ${command}'`).toContain(command);
  }
  const { flags } = parseSettingsArgs(words.slice(1));
  const cwd = mkdtempSync(join(tmpdir(), "smmf-deploy-"));
  try {
    // Values: parsed as smmf parses them (a wrong port, enum or number throws here).
    loadConfig(flags, env, cwd);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
  return { command, flags: flags as Record<string, string | string[] | boolean> };
}

/** The value a setting gets from flags, else the environment, else its default (as smmf resolves them). */
function effective(flagName: string, flags: Record<string, unknown>, env: Record<string, string>): string {
  const row = rowOfFlag(flagName)!;
  const flag = flags[flagName];
  if (typeof flag === "string") return flag;
  for (const name of row.env) if (env[name]) return env[name];
  return String(row.default ?? "");
}

const { globalArgs, stages } = parseDockerfile(readFileSync(DOCKERFILE, "utf8"));
const stageNamed = (name: string) => stages.find((s) => s.name === name);
const full = stageNamed("full");
const light = stageNamed("light");

describe("deploy/Dockerfile", () => {
  it("has the targets full (the default: last) and light, each on a slim Node 20 base with no compilers", () => {
    expect(full, "a stage named full (docker build --target full)").toBeDefined();
    expect(light, "a stage named light (docker build --target light)").toBeDefined();
    expect(stages.at(-1)!.name, "full is the last stage: what docker build makes without --target").toBe("full");
    for (const target of [full!, light!]) {
      const root = chain(target)[0];
      expect(root.base, `the base image of ${target.name} (ARG defaults: ${JSON.stringify(globalArgs)})`).toMatch(/^(docker\.io\/(library\/)?)?node:20(\.\d+){0,2}-(\w+-)?slim(@sha256:[0-9a-f]{64})?$/);
      const config = imageConfig(target);
      for (const run of config.runs) {
        expect(run, `${target.name}: no compilers or npm install in the runtime image`).not.toMatch(/\b(g\+\+|gcc|build-essential|make|python3)\b|\bnpm (ci|install|i)\b/);
      }
    }
  });

  it("COPYs only what the build context holds (.dockerignore lets it in), or what a named stage made", () => {
    expect(IGNORE.length, "a .dockerignore at the repository root (the build context) keeps node_modules, dist/ and data/ out").toBeGreaterThan(0);
    for (const path of ["node_modules/vitest/package.json", "dist/cli/main.js", "data/requests.db", ".git/HEAD", "test/serve.test.ts"]) {
      expect(inContext(path), `.dockerignore should keep ${path} out of the build context`).toBe(false);
    }
    for (const stage of stages) {
      let workdir = "/";
      for (const ins of stage.instructions) {
        if (ins.op === "WORKDIR") workdir = posix.resolve(workdir, ins.args);
        if (ins.op === "ADD") throw new Error(`line ${ins.line}: use COPY, not ADD`);
        if (ins.op !== "COPY") continue;
        const copy = copyOf(ins);
        if (copy.from !== undefined) {
          const from = stages.find((s) => s.name === copy.from);
          expect(from, `line ${ins.line}: COPY --from=${copy.from} names no stage`).toBeDefined();
          expect(from!.index, `line ${ins.line}: --from=${copy.from} must come before ${stage.name}`).toBeLessThan(stage.index);
          // Made there: dist/ by `npm run build`, node_modules/ by `npm ci`, in that stage's WORKDIR.
          const fromConfig = imageConfig(from!);
          for (const source of copy.sources) {
            const made = posix.relative(fromConfig.workdir, source.replace(/\/$/, ""));
            const maker = made === "dist" ? /\bnpm run build\b/ : made === "node_modules" ? /\bnpm ci\b/ : null;
            expect(maker, `line ${ins.line}: ${source} is neither ${fromConfig.workdir}/dist nor ${fromConfig.workdir}/node_modules of stage ${from!.name}`).not.toBeNull();
            expect(fromConfig.runs.some((r) => maker!.test(r)), `line ${ins.line}: stage ${from!.name} never runs ${maker}`).toBe(true);
          }
          continue;
        }
        for (const source of copy.sources) {
          expect(existsSync(join(projectRoot, source)), `line ${ins.line}: COPY source ${source} is not in the repository`).toBe(true);
          expect(inContext(source), `line ${ins.line}: .dockerignore keeps COPY source ${source} out of the build context`).toBe(true);
          if (isDirectory(source)) expect(filesUnder(source).filter(inContext).length, `line ${ins.line}: .dockerignore keeps everything in ${source} out`).toBeGreaterThan(0);
        }
      }
    }
  });

  it("light installs without the optional dependencies, full with them; both without dev dependencies", () => {
    const modulesFrom = (target: Stage) => {
      const copies = imageConfig(target).copies.filter((c) => c.from && c.sources.some((s) => /node_modules\/?$/.test(s)));
      expect(copies.length, `${target.name} COPYs node_modules from one stage`).toBe(1);
      expect(posix.resolve(copies[0].workdir, copies[0].dest), `${target.name}: node_modules lands in /app`).toBe("/app/node_modules");
      return imageConfig(stageNamed(copies[0].from!)!).runs.filter((r) => /\bnpm ci\b/.test(r));
    };
    const lightRuns = modulesFrom(light!);
    const fullRuns = modulesFrom(full!);
    expect(lightRuns.length).toBe(1);
    expect(fullRuns.length).toBe(1);
    expect(lightRuns[0]).toMatch(/\bnpm ci\b.*--omit=dev\b/);
    expect(lightRuns[0]).toMatch(/\bnpm ci\b.*--omit=optional\b/);
    expect(fullRuns[0]).toMatch(/\bnpm ci\b.*--omit=dev\b/);
    expect(fullRuns[0]).not.toMatch(/--omit=optional/);
    // The install scripts those installs run (postinstall: patch-package, build.mjs --if-possible) are there.
    for (const target of [full!, light!]) {
      const from = imageConfig(target).copies.find((c) => c.from && c.sources.some((s) => /node_modules/.test(s)))!.from!;
      const copied = imageConfig(stageNamed(from)!).copies.flatMap((c) => c.sources.map((s) => s.replace(/\/$/, "")));
      expect(copied).toEqual(expect.arrayContaining(["package.json", "package-lock.json", "scripts/postinstall.mjs", "scripts/build.mjs", "patches"]));
    }
  });

  it("holds what the package ships (package.json files) in /app, dist/ built in a build stage, owned by root", () => {
    for (const target of [full!, light!]) {
      const config = imageConfig(target);
      expect(config.workdir).toBe("/app");
      const dests = config.copies.flatMap((c) => c.sources.map((s) => destOf(c, s)));
      for (const entry of PKG.files) {
        const want = posix.join("/app", entry.replace(/\/$/, ""));
        expect(dests, `${target.name}: ${entry} (package.json files) in the image`).toContain(want);
      }
      const dist = config.copies.find((c) => destOf(c, c.sources[0]) === "/app/dist");
      expect(dist?.from, `${target.name}: dist/ comes from a build stage (the checkout's dist/ is not in the context)`).toBeDefined();
      expect(imageConfig(stageNamed(dist!.from!)!).runs.some((r) => /\bnpm run build\b/.test(r))).toBe(true);
      // The program is not writable by the service user.
      const copyLines = chain(target).flatMap((s) => s.instructions).filter((i) => i.op === "COPY");
      for (const ins of copyLines) expect(ins.args, `line ${ins.line}: keep the program owned by root`).not.toMatch(/--chown/);
    }
  });

  it("runs as uid 10001 (smmf), not root", () => {
    for (const target of [full!, light!]) {
      const config = imageConfig(target);
      expect(config.user, `${target.name}: USER`).toMatch(/^(10001(:10001)?|smmf(:smmf)?)$/);
      expect(config.runs.join("\n"), "the smmf user and group, uid/gid 10001").toMatch(/useradd\b[^\n]*--uid 10001\b/);
      expect(config.runs.join("\n")).toMatch(/groupadd\b[^\n]*--gid 10001\b/);
    }
  });

  it("ENTRYPOINT runs bin/smmf.js with node; CMD is `smmf serve` with flags serve takes", async () => {
    for (const target of [full!, light!]) {
      const config = imageConfig(target);
      expect(config.entrypoint).toEqual(["node", "/app/bin/smmf.js"]);
      const script = posix.relative("/app", config.entrypoint[1]);
      expect(existsSync(join(projectRoot, script)), `${script} in the repository`).toBe(true);
      expect(config.copies.some((c) => c.sources.some((s) => script.startsWith(s.replace(/\/?$/, "/")) && destOf(c, s) === posix.join("/app", s.replace(/\/$/, "")))), `${script} is COPYed to ${config.entrypoint[1]}`).toBe(true);
      expect(config.cmd[0]).toBe("serve");
      checkSmmfArgs(config.cmd, {}, `${target.name} CMD`);
    }
    // And the real CLI accepts that command line (strict flag parsing; --help stops before serving).
    const cmd = imageConfig(full!).cmd;
    const result = spawnSync(process.execPath, [join(projectRoot, "bin", "smmf.js"), ...cmd, "--help"], { encoding: "utf8", timeout: 20_000, env: { ...process.env, SMMF_CONFIG: "" } });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Usage: smmf serve/);
  });

  it("EXPOSEs the ports and declares the VOLUMEs that CMD's flags (and the worker convention) use", () => {
    for (const target of [full!, light!]) {
      const config = imageConfig(target);
      const { flags } = checkSmmfArgs(config.cmd, {}, `${target.name} CMD`);
      expect(config.expose, "the gateway/controller port the CMD listens on").toContain(Number(effective("port", flags, {})));
      expect([...config.expose].sort(), "the roles' ports (ROLE_PORT)").toEqual([...new Set(Object.values(ROLE_PORT))].sort());
      expect(effective("host", flags, {}), "listens beyond the container's loopback").toBe("0.0.0.0");
      expect([...config.volumes].sort()).toEqual(["/data", "/models"]);
      expect(effective("model-dir", flags, {})).toBe("/models");
      expect(effective("data-dir", flags, {})).toBe("/data");
      // /data is the service user's (a fresh named volume takes the image's ownership).
      expect(config.runs.join("\n")).toMatch(/chown\s+(10001:10001|smmf:smmf)\s+\/data\b/);
      expect(config.stopsignal || "SIGTERM", "SIGTERM drains").toBe("SIGTERM");
    }
  });

  it("labels the image with the package's version", () => {
    expect(imageConfig(full!).labels["org.opencontainers.image.version"]).toBe(PKG.version);
  });

  describe("HEALTHCHECK", () => {
    const servers: Array<ReturnType<typeof createServer>> = [];
    afterAll(() => servers.forEach((s) => s.close()));

    const healthcheck = () => {
      const args = imageConfig(full!).healthcheck;
      const m = /^((?:--[\w-]+=\S+\s+)*)CMD\s+(\[.*\])$/s.exec(args);
      expect(m, `HEALTHCHECK [OPTIONS] CMD [exec form]: ${args}`).not.toBeNull();
      const argv = execForm(m![2], "HEALTHCHECK CMD");
      expect(argv.slice(0, 2), "node itself asks (no curl in slim images)").toEqual(["node", "-e"]);
      expect(argv[2]).toContain("/healthz");
      return { options: m![1], script: argv[2] };
    };
    const run = (script: string, env: Record<string, string>) =>
      new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, ["-e", script], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: "ignore" });
        child.on("exit", (code) => resolve(code));
      });
    const serve = async (status: number) => {
      const server = createServer((req, res) => {
        res.writeHead(req.url === "/healthz" ? status : 404).end();
      });
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      return (server.address() as AddressInfo).port;
    };

    it("has a timeout and a start period, and defaults to the gateway's port", () => {
      const { options, script } = healthcheck();
      expect(options).toMatch(/--timeout=\d+s/);
      expect(options).toMatch(/--start-period=\d+s/);
      expect(script).toContain(`|| ${rowOfFlag("port")!.default}`);
    });

    it("exits 0 when /healthz answers 200 on SMMF_HEALTH_PORT, 1 on 503 or when nothing listens", async () => {
      const { script } = healthcheck();
      expect(await run(script, { SMMF_HEALTH_PORT: String(await serve(200)) })).toBe(0);
      expect(await run(script, { SMMF_HEALTH_PORT: String(await serve(503)) })).toBe(1);
      const closed = await serve(200);
      servers.at(-1)!.close();
      expect(await run(script, { SMMF_HEALTH_PORT: String(closed) })).toBe(1);
      expect(await run(script, { SMMF_HEALTH_URL: `http://127.0.0.1:${await serve(200)}/healthz` })).toBe(0);
    });
  });
});

// ---- deploy/k8s: the manifests run this image; they must use it as built.

interface Container {
  name?: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string }>;
  ports?: Array<{ containerPort: number; name?: string }>;
  volumeMounts?: Array<{ mountPath: string }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: { runAsUser?: number; runAsGroup?: number; runAsNonRoot?: boolean; readOnlyRootFilesystem?: boolean };
}
interface Probe {
  httpGet?: { path?: string; port?: number | string };
}

/** SMMF_* variables that are not settings but are read: by SMMF (its sources) or by the image's HEALTHCHECK. */
const SOURCES = (() => {
  const read = (dir: string): string =>
    readdirSync(dir, { withFileTypes: true })
      .map((e) => (e.isDirectory() ? read(join(dir, e.name)) : e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") ? readFileSync(join(dir, e.name), "utf8") : ""))
      .join("\n");
  return read(join(projectRoot, "src")) + readFileSync(DOCKERFILE, "utf8");
})();
function knownVariable(name: string): boolean {
  return rowOfEnv(name) !== undefined || new RegExp(`\\b${name}\\b`).test(SOURCES);
}

/** An argument list without --config FILE / --config=FILE. */
function dropConfig(words: string[]): string[] {
  return words.filter((w, i) => !/^--config(=|$)/.test(w) && words[i - 1] !== "--config");
}

/** Every YAML file under a folder. */
function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : []));
}
/** Objects anywhere in a document: containers (with an image) and pod specs (for their securityContext). */
function walk(node: unknown, visit: (obj: Record<string, unknown>) => void): void {
  if (Array.isArray(node)) node.forEach((n) => walk(n, visit));
  else if (node && typeof node === "object") {
    visit(node as Record<string, unknown>);
    Object.values(node).forEach((v) => walk(v, visit));
  }
}

describe("deploy/k8s uses the image as deploy/Dockerfile builds it", () => {
  it("exists (written alongside; see deploy/k8s/README.md)", () => {
    expect(existsSync(K8S_DIR), "the Kubernetes manifests are missing: deploy/k8s").toBe(true);
    expect(yamlFiles(K8S_DIR).length, "no YAML files in deploy/k8s").toBeGreaterThan(0);
  });

  it("names smmf/smmf:<version> (full) or smmf/smmf:<version>-light, with the image's paths, ports and user", () => {
    if (!existsSync(K8S_DIR)) throw new Error("the Kubernetes manifests are missing: deploy/k8s");
    const image = imageConfig(full!);
    const found: string[] = [];
    for (const file of yamlFiles(K8S_DIR)) {
      const where = relative(projectRoot, file);
      for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
        expect(doc.errors.map(String), where).toEqual([]);
        const pods: Array<Record<string, unknown>> = [];
        walk(doc.toJS(), (obj) => {
          // kustomize's images: transformer
          if (typeof obj.name === "string" && obj.name.startsWith("smmf/smmf") && ("newTag" in obj || "newName" in obj)) {
            const tagged = `${(obj.newName as string) ?? obj.name}:${obj.newTag as string}`;
            expect([FULL_IMAGE, LIGHT_IMAGE], `${where}: kustomize images`).toContain(tagged);
          }
          if (Array.isArray(obj.containers)) pods.push(obj);
          // configMapGenerator literals (envFrom): SMMF_* variables must be SMMF's.
          if (Array.isArray(obj.literals)) {
            for (const literal of obj.literals) {
              const name = /^(SMMF_[A-Z0-9_]+)=/.exec(String(literal))?.[1];
              if (name) expect(knownVariable(name), `${where}: ${name} is not a variable SMMF reads`).toBe(true);
            }
          }
        });
        for (const pod of pods) {
          const podUser = (pod.securityContext as Container["securityContext"])?.runAsUser;
          for (const c of pod.containers as Container[]) {
            if (typeof c.image !== "string" || !c.image.startsWith("smmf/smmf")) continue;
            const at = `${where}: container ${c.name}`;
            found.push(at);
            expect([FULL_IMAGE, LIGHT_IMAGE, "smmf/smmf"], `${at}: image`).toContain(c.image);
            if (c.command) expect(c.command, `${at}: command replaces the ENTRYPOINT`).toEqual(image.entrypoint);
            // args replace CMD: then --model-dir and --data-dir must be given again (else ./models, ./data in /app).
            const words = c.args ?? image.cmd;
            const env = Object.fromEntries((c.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, String(e.value)]));
            for (const e of c.env ?? []) if (e.name.startsWith("SMMF_")) expect(knownVariable(e.name), `${at}: ${e.name} is not a variable SMMF (or the image's HEALTHCHECK) reads`).toBe(true);
            for (const w of words) if (/^--config\b/.test(w)) expect(rowOfFlag("config"), at).toBeDefined();
            const { command, flags } = checkSmmfArgs(
              // $(VAR) is Kubernetes' own substitution; the config file (--config) is mounted, not here.
              dropConfig(words).map((w) => w.replace(/\$\((\w+)\)/g, "x")),
              // Values from the downward API or secrets are not here: check the literal ones.
              Object.fromEntries(Object.entries(env).filter(([n]) => n.startsWith("SMMF_") && rowOfEnv(n))),
              at,
            );
            const mounts = (c.volumeMounts ?? []).map((m) => m.mountPath);
            const mounted = (path: string) => mounts.some((m) => path === m || path.startsWith(m.replace(/\/?$/, "/")));
            const dataDir = effective("data-dir", flags, env);
            expect(dataDir, `${at}: the data dir is the image's /data volume (mounted) or under a mount`).toMatch(/^\//);
            expect(mounted(dataDir) || (dataDir === "/data" && !c.securityContext?.readOnlyRootFilesystem), `${at}: data dir ${dataDir} is not mounted (mounts: ${mounts.join(", ")})`).toBe(true);
            if (command === "worker" || command === "serve") {
              const modelDir = effective("model-dir", flags, env);
              expect(modelDir === "/models" || mounted(modelDir), `${at}: model dir ${modelDir} is neither /models nor mounted`).toBe(true);
            }
            const [hostFlag, portFlag] = command === "worker" ? ["worker-host", "worker-port"] : ["host", "port"];
            expect(effective(hostFlag, flags, env), `${at}: --${hostFlag} must not be loopback in a pod`).not.toMatch(/^(127\.|localhost$|::1$)/);
            const port = Number(effective(portFlag, flags, env));
            expect(port, `${at}: --${portFlag}`).toBe(ROLE_PORT[command]);
            expect(image.expose, `${at}: port ${port} is one the image EXPOSEs`).toContain(port);
            const ports = c.ports ?? [];
            expect(ports.map((p) => p.containerPort), `${at}: containerPort`).toContain(port);
            for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
              if (!probe?.httpGet) continue;
              expect(probe.httpGet.path, `${at}: probe path`).toMatch(/^\/(healthz|readyz)$/);
              const probePort = typeof probe.httpGet.port === "string" ? ports.find((p) => p.name === probe.httpGet!.port)?.containerPort : probe.httpGet.port;
              expect(probePort, `${at}: probe port`).toBe(port);
            }
            const grace = Number(effective("shutdown-grace-ms", flags, env));
            if (typeof pod.terminationGracePeriodSeconds === "number") expect(pod.terminationGracePeriodSeconds * 1000, `${at}: terminationGracePeriodSeconds must exceed --shutdown-grace-ms`).toBeGreaterThan(grace);
            else expect(grace, `${at}: the default terminationGracePeriodSeconds (30 s) must exceed --shutdown-grace-ms`).toBeLessThan(30_000);
            const user = c.securityContext?.runAsUser ?? podUser;
            if (user !== undefined) expect(user, `${at}: runAsUser is the image's smmf user`).toBe(10001);
          }
        }
      }
    }
    expect(found.length, "no container in deploy/k8s runs smmf/smmf").toBeGreaterThan(0);
  });
});
