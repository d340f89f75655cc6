import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expectInvalid } from "../../test/helpers/expectInvalid.js";
import type { SmmfConfig } from "./SmmfConfig.js";
import { DEFAULTS, loadConfig } from "./loadConfig.js";
import { COMMANDS, SECTIONS, SETTINGS, fileKeyOf, type Setting } from "./settings.js";
import { SETTINGS_FLAG_OPTIONS, parseSettingsArgs, settingsHelp } from "./settingsCli.js";
import { DOCS_COMMAND, readmeSettingsRegion, settingsRegion } from "./settingsReadme.js";

const ROWS: readonly Setting[] = SETTINGS;
const GENERIC = ROWS.filter((row) => row.parse.kind !== "custom");
const label = (row: Setting) => row.flag ?? row.key ?? "?";

// Every field of SmmfConfig: tsc fails when a field is missing here or one is named that SmmfConfig lacks.
const FIELDS: Record<keyof SmmfConfig, true> = {
  host: true, port: true, workerHost: true, workerPort: true, modelDir: true, models: true, threads: true, sequences: true,
  contextSize: true, gpu: true, maxBodyBytes: true, streamIntervalMs: true, logLevel: true, shutdownGraceMs: true, etcd: true,
  leaseTtlSeconds: true, workerId: true, advertiseAddress: true, policy: true, modelPolicies: true, maxAttempts: true,
  queueSize: true, queueTimeoutMs: true, observability: true, otlpEndpoint: true, requestLog: true, requestLogCapture: true,
  requestLogRetentionDays: true, requestLogMaxRows: true, dataDir: true, auth: true, clusterSecretFile: true, corsOrigins: true,
  controllerId: true, labels: true, maxMemoryMb: true, tlsCert: true, tlsKey: true, tlsCa: true, tlsClientCert: true,
  tlsClientKey: true, etcdCa: true, etcdCert: true, etcdKey: true, etcdUser: true, etcdPasswordFile: true, headersTimeoutMs: true,
  requestTimeoutMs: true, idleSocketTimeoutMs: true, maxConnections: true, maxStreams: true, maxMessages: true,
  maxPromptChars: true, maxStopChars: true, maxModels: true, maxReplicas: true, maxInstancesPerWorker: true, downloadCacheMb: true,
  requestLogMaxMb: true, sourceDirs: true, sourceHosts: true, sourceAllowPrivate: true, maxDownloadMb: true, downloadTimeoutMs: true,
  upstreamCredentials: true, engine: true,
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "smmf-settings-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Writes ./smmf.config.json in `dir` (the working directory of the loads), so relative paths resolve alike from all sources. */
function writeConfig(content: Record<string, unknown>): string {
  const path = join(dir, "smmf.config.json");
  writeFileSync(path, JSON.stringify(content));
  return path;
}

interface Sample {
  /** The flag's arguments. */
  args: string[];
  env: string;
  file: unknown;
  /** What the config then holds. */
  expected: unknown;
}

/** A valid value for a row, unlike its default, as each source writes it. */
function sampleOf(row: Setting): Sample {
  const flag = `--${row.flag}`;
  const parse = row.parse;
  switch (parse.kind) {
    case "integer": {
      const n = parse.max !== row.default ? parse.max : parse.min;
      return { args: [flag, String(n)], env: String(n), file: n, expected: n };
    }
    case "enum": {
      const v = parse.values.find((x) => x !== row.default)!;
      return { args: [flag, v], env: v, file: v, expected: v };
    }
    case "string":
      return { args: [flag, "sample-value"], env: "sample-value", file: "sample-value", expected: "sample-value" };
    case "path":
      return { args: [flag, "sub/thing.pem"], env: "sub/thing.pem", file: "sub/thing.pem", expected: join(dir, "sub", "thing.pem") };
    case "on/off": {
      const on = row.default !== true;
      return { args: [flag, on ? "on" : "off"], env: on ? "on" : "off", file: on, expected: on };
    }
    case "list":
      return {
        args: parse.example.flatMap((v) => [flag, v]),
        env: parse.example.join(","),
        file: [...parse.example],
        expected: parse.example.map((v) => parse.item("test", v, dir)),
      };
    case "map": {
      const entries = parse.example.map((p) => [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)]);
      return { args: parse.example.flatMap((v) => [flag, v]), env: parse.example.join(","), file: Object.fromEntries(entries), expected: Object.fromEntries(entries) };
    }
    case "custom":
      throw new Error(`no generic sample for the custom row ${label(row)}`);
  }
}

describe("the settings table", () => {
  it("has exactly one row per SmmfConfig field, and no row for anything else", () => {
    for (const field of Object.keys(FIELDS)) expect(ROWS.filter((row) => row.key === field).length, field).toBe(1);
    for (const row of ROWS) if (row.key !== null) expect(Object.hasOwn(FIELDS, row.key), row.key).toBe(true);
    expect(Object.keys(DEFAULTS).sort()).toEqual(Object.keys(FIELDS).sort());
  });

  it("has no flag, environment variable or file key twice, and no flag named help", () => {
    const flags = ROWS.flatMap((row) => (row.flag ? [row.flag] : []));
    const envs = ROWS.flatMap((row) => row.env);
    const keys = ROWS.flatMap((row) => fileKeyOf(row) ?? []);
    expect(new Set(flags).size).toBe(flags.length);
    expect(new Set(envs).size).toBe(envs.length);
    expect(new Set(keys).size).toBe(keys.length);
    expect(flags).not.toContain("help");
    for (const row of ROWS) {
      expect(row.help.length, label(row)).toBeGreaterThan(5);
      expect(row.flag !== null || fileKeyOf(row) !== null, `${label(row)} can be set somewhere`).toBe(true);
      if (row.flag !== null) expect(row.env.length, `${label(row)} has an environment variable`).toBeGreaterThan(0);
      for (const name of row.env) expect(name, label(row)).toMatch(/^(SMMF|OTEL)_[A-Z0-9_]+$/);
    }
  });

  it("gives each integer row a default within its range", () => {
    for (const row of ROWS) {
      if (row.parse.kind !== "integer") continue;
      expect(row.default as number, label(row)).toBeGreaterThanOrEqual(row.parse.min);
      expect(row.default as number, label(row)).toBeLessThanOrEqual(row.parse.max);
    }
  });

  describe.each(GENERIC.map((row) => [label(row), row] as const))("%s", (_name, row) => {
    it("is set alike by its flag, each environment variable and its config-file key", () => {
      const sample = sampleOf(row);
      expect(sample.expected, "the sample differs from the default").not.toEqual(DEFAULTS[row.key!]);
      const { flags } = parseSettingsArgs(sample.args);
      expect(loadConfig(flags, {}, dir)[row.key!], `--${row.flag}`).toEqual(sample.expected);
      for (const name of row.env) expect(loadConfig({}, { [name]: sample.env }, dir)[row.key!], name).toEqual(sample.expected);
      writeConfig({ [fileKeyOf(row)!]: sample.file });
      expect(loadConfig({}, {}, dir)[row.key!], `file key ${fileKeyOf(row)}`).toEqual(sample.expected);
    });

    if (row.parse.kind === "integer") {
      const { min, max } = row.parse;
      it("takes the file < env < flags precedence, and refuses values out of range naming the source", () => {
        const path = writeConfig({ [row.key!]: min });
        const env = { [row.env[0]]: String(min + 1) };
        expect(loadConfig({}, {}, dir)[row.key!]).toBe(min);
        expect(loadConfig({}, env, dir)[row.key!]).toBe(min + 1);
        expect(loadConfig(parseSettingsArgs([`--${row.flag}`, String(max)]).flags, env, dir)[row.key!]).toBe(max);
        const range = `must be an integer from ${min} to ${max}`;
        expect(expectInvalid(() => loadConfig(parseSettingsArgs([`--${row.flag}`, String(max + 1)]).flags, {}, dir)).message).toBe(`--${row.flag} ${range}; got '${max + 1}'`);
        expect(expectInvalid(() => loadConfig({}, { [row.env[0]]: "x" }, dir)).message).toContain(`${row.env[0]} ${range}`);
        writeConfig({ [row.key!]: max + 1 });
        expect(expectInvalid(() => loadConfig({}, {}, dir)).message).toContain(`${path}: ${row.key} ${range}`);
      });
    }

    if (row.parse.kind === "enum") {
      const values = row.parse.values;
      it("refuses other values, naming the source and the values", () => {
        expect(expectInvalid(() => loadConfig(parseSettingsArgs([`--${row.flag}`, "bogus"]).flags, {}, dir)).message).toBe(`--${row.flag} must be ${values.join(", ")}; got 'bogus'`);
        expect(expectInvalid(() => loadConfig({}, { [row.env[0]]: "bogus" }, dir)).message).toContain(row.env[0]);
      });
    }
  });

  /** The custom rows, each checked by hand: a new custom row needs its case here. */
  const CUSTOM: Record<string, () => void> = {
    config: () => {
      writeFileSync(join(dir, "a.json"), JSON.stringify({ port: 1111 }));
      writeFileSync(join(dir, "b.json"), JSON.stringify({ port: 2222 }));
      expect(loadConfig({}, { SMMF_CONFIG: "a.json" }, dir).port).toBe(1111);
      expect(loadConfig(parseSettingsArgs(["--config", "b.json"]).flags, { SMMF_CONFIG: "a.json" }, dir).port).toBe(2222);
      const path = writeConfig({ config: "a.json" });
      expect(expectInvalid(() => loadConfig({}, {}, dir)).message).toBe(`unknown setting 'config' in ${path}`);
    },
    model: () => {
      const expected = [{ name: "m", file: join(dir, "m.gguf") }];
      expect(loadConfig(parseSettingsArgs(["--model", "m=m.gguf"]).flags, {}, dir).models).toEqual(expected);
      expect(loadConfig({}, { SMMF_MODELS: "m=m.gguf" }, dir).models).toEqual(expected);
      writeConfig({ models: [{ name: "m", file: "m.gguf" }] });
      expect(loadConfig({}, {}, dir).models).toEqual([{ name: "m", file: "m.gguf" }]);
    },
    proxy: () => {
      const expected = [{ name: "m", file: join(dir, "m.gguf") }, { name: "p", engine: "ollama", file: "" }];
      expect(loadConfig(parseSettingsArgs(["--proxy", "p=ollama", "--model", "m=m.gguf"]).flags, {}, dir).models).toEqual(expected);
      expect(loadConfig({}, { SMMF_PROXIES: "p=ollama", SMMF_MODELS: "m=m.gguf" }, dir).models).toEqual(expected);
      const path = writeConfig({ proxy: ["p=ollama"] });
      expect(expectInvalid(() => loadConfig({}, {}, dir)).message).toBe(`unknown setting 'proxy' in ${path}`);
    },
    "no-models": () => {
      expect(loadConfig(parseSettingsArgs(["--no-models", "--model", "m=m.gguf"]).flags, {}, dir).models).toEqual([]);
      expect(loadConfig({}, { SMMF_NO_MODELS: "1", SMMF_MODELS: "m=m.gguf" }, dir).models).toEqual([]);
      expect(loadConfig({}, { SMMF_NO_MODELS: "0" }, dir).models).toHaveLength(1);
    },
    upstreamCredentials: () => {
      writeConfig({ upstreamCredentials: [{ name: "k", env: "K", allowedBaseUrls: ["https://api.example.com/v1"] }] });
      expect(loadConfig({}, {}, dir).upstreamCredentials).toMatchObject([{ name: "k", env: "K" }]);
    },
  };

  it("has a hand-written check for every custom row", () => {
    expect(ROWS.filter((row) => row.parse.kind === "custom").map(label).sort()).toEqual(Object.keys(CUSTOM).sort());
  });

  it.each(Object.keys(CUSTOM))("custom row %s is read from each of its sources", (name) => CUSTOM[name]());

  it("refuses unknown config-file keys, naming the file", () => {
    const path = writeConfig({ port: 1, maxConections: 2 });
    expect(expectInvalid(() => loadConfig({}, {}, dir)).message).toBe(`unknown setting 'maxConections' in ${path}`);
  });

  it("refuses a config-file value of the wrong JSON type, naming the key and the file", () => {
    let path = writeConfig({ tlsCert: { a: 1 } });
    expect(expectInvalid(() => loadConfig({}, {}, dir)).message).toBe(`${path}: 'tlsCert' must be a string or a number`);
    path = writeConfig({ sourceAllowPrivate: "on" });
    expect(expectInvalid(() => loadConfig({}, {}, dir)).message).toBe(`'sourceAllowPrivate' in ${path} must be true or false`);
    path = writeConfig({ sourceHosts: "a.example" });
    expect(expectInvalid(() => loadConfig({}, {}, dir)).message).toBe(`'sourceHosts' in ${path} must be an array of strings`);
    path = writeConfig({ labels: ["a=b"] });
    expect(expectInvalid(() => loadConfig({}, {}, dir)).message).toBe(`'labels' in ${path} must be an object`);
  });

  it("resolves paths in the file against the file's folder, and from env and flags against the working directory", () => {
    writeFileSync(join(dir, "c.json"), JSON.stringify({ tlsCert: "certs/a.pem", etcdPasswordFile: "/abs/pw" }));
    const config = loadConfig({ config: join(dir, "c.json") }, { SMMF_TLS_KEY: "k.pem" }, "/");
    expect(config).toMatchObject({ tlsCert: join(dir, "certs", "a.pem"), etcdPasswordFile: "/abs/pw", tlsKey: resolve("/", "k.pem") });
  });

  it("merges model policies and labels over the sources, and checks each policy", () => {
    writeConfig({ modelPolicies: { a: "weighted", "b=c": "p2c" } });
    const config = loadConfig(parseSettingsArgs(["--model-policy", "c=round-robin"]).flags, { SMMF_MODEL_POLICIES: "a=p2c" }, dir);
    expect(config.modelPolicies).toEqual({ a: "p2c", "b=c": "p2c", c: "round-robin" });
    expect(expectInvalid(() => loadConfig({ "model-policy": ["x=fast"] }, {}, dir)).message).toBe("--model-policy must be prefix, p2c, round-robin, weighted; got 'fast'");
    expect(expectInvalid(() => loadConfig({ "model-policy": ["=p2c"] }, {}, dir)).message).toBe("--model-policy takes model=policy; got '=p2c'");
  });
});

describe("the command line", () => {
  it("accepts every row's flag, and --help", () => {
    for (const row of ROWS) if (row.flag) expect(SETTINGS_FLAG_OPTIONS[row.flag], row.flag).toBeDefined();
    expect(parseSettingsArgs(["-h"]).help).toBe(true);
    expect(() => parseSettingsArgs(["--no-such-flag"])).toThrow(/--no-such-flag/);
  });

  it("--help lists every row's flag (and the file-only ones), each command's its own sections", () => {
    const all = settingsHelp();
    for (const row of ROWS) expect(all, label(row)).toContain(row.flag ? `--${row.flag}` : `${row.key} (config file)`);
    for (const command of COMMANDS) {
      const help = settingsHelp(command);
      for (const row of ROWS) {
        if (!row.flag) continue;
        const shown = new RegExp(`^  --${row.flag}( |$)`, "m").test(help);
        expect(shown, `${command} --help shows --${row.flag}`).toBe(SECTIONS[row.section].commands.includes(command));
      }
    }
  });

  it("--help names defaults and environment variables", () => {
    const help = settingsHelp("serve");
    const flat = help.replace(/\s+/g, " ");
    expect(flat).toContain("--max-connections N most open connections per listener; more are closed at once (default 4096; env SMMF_MAX_CONNECTIONS)");
    expect(flat).toContain("--label KEY=VALUE a worker label, which the controller's placement can ask for (repeatable; env SMMF_LABELS, comma-separated; file key labels)");
    for (const line of help.split("\n")) expect(line.length, line).toBeLessThanOrEqual(110);
  });
});

describe("the README", () => {
  it("holds the configuration table the settings table makes", () => {
    const readme = readFileSync(fileURLToPath(new URL("../../README.md", import.meta.url)), "utf8");
    const current = readmeSettingsRegion(readme);
    if (current !== settingsRegion()) expect.fail(`README.md's configuration table differs from src/config/settings.ts: run '${DOCS_COMMAND}'`);
  });
});
