import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { ENGINE_NAMES, isFileEngine } from "../engines/proxyPresets.js";
import type { ModelConfig, SmmfConfig } from "./SmmfConfig.js";
import { bad, DEFAULTS, fileKeyOf, parseEnum, parseEntries, parseInteger, parsePairs, SETTINGS, type ConfigFlags, type LoadState, type Setting, type ValueSource } from "./settings.js";

export { DEFAULTS, parseLabels, type ConfigFlags } from "./settings.js";

export const DEFAULT_MODEL: ModelConfig = { name: "stories260K", file: "stories260K.gguf" };
export const DEFAULT_CONFIG_FILE = "smmf.config.json";

const ROWS: readonly Setting[] = SETTINGS;

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw bad(`cannot read the config file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw bad(`the config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw bad(`the config file ${path} must hold a JSON object`);
  const known = new Set(ROWS.map(fileKeyOf).filter((key) => key !== null));
  for (const key of Object.keys(parsed)) if (!known.has(key)) throw bad(`unknown setting '${key}' in ${path}`);
  return parsed as Record<string, unknown>;
}

function set(config: SmmfConfig, key: keyof SmmfConfig, value: unknown): void {
  (config as unknown as Record<string, unknown>)[key] = value;
}

/** One value of one row from one source: the flag's, the environment variable's (lists split) or the file's. */
function readSetting(row: Setting, config: SmmfConfig, raw: unknown, source: ValueSource): void {
  const parse = row.parse;
  if (parse.kind === "custom") return parse.read(config, raw, source);
  const key = row.key!;
  const inFile = source.kind === "file";
  if (parse.kind === "list") {
    if (inFile && (!Array.isArray(raw) || !raw.every((v) => typeof v === "string"))) throw bad(`'${key}' in ${source.path} must be an array of strings`);
    return set(config, key, (raw as string[]).map((item) => parse.item(source.name, item, source.baseDir)));
  }
  if (parse.kind === "map") {
    let entries: Record<string, string>;
    if (inFile) {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw bad(`'${key}' in ${source.path} must be an object`);
      entries = {};
      for (const [k, v] of Object.entries(raw)) Object.assign(entries, parseEntries(parse, [[k, String(v)]], `${source.name}.${k}`));
    } else {
      entries = parsePairs(parse, raw as string[], source.name);
    }
    return set(config, key, { ...(config[key] as Record<string, string>), ...entries });
  }
  let text: string;
  if (parse.kind === "on/off" && inFile) {
    if (typeof raw !== "boolean") throw bad(`'${key}' in ${source.path} must be true or false`);
    text = raw ? "on" : "off";
  } else if (inFile) {
    if (typeof raw !== "string" && typeof raw !== "number") throw bad(`${source.path}: '${key}' must be a string or a number`);
    text = String(raw);
  } else {
    text = raw as string;
  }
  switch (parse.kind) {
    case "integer":
      return set(config, key, parseInteger(source.name, text, parse.min, parse.max));
    case "enum":
      return set(config, key, parseEnum(source.name, text, parse.values));
    case "on/off":
      return set(config, key, parseEnum(source.name, text, ["on", "off"]) === "on");
    case "path":
      return set(config, key, text === "" && row.default === "" ? "" : resolve(source.baseDir, text));
    case "string":
      return set(config, key, text);
  }
}

/** Applies one source's values (rows in table order): --model and --proxy of one source together replace the models. */
function applySource(config: SmmfConfig, state: LoadState, values: Iterable<[Setting, unknown, string]>, where: Omit<ValueSource, "name" | "load">): void {
  state.models = [];
  for (const [row, raw, name] of values) readSetting(row, config, raw, { ...where, name, load: state });
  if (state.models.length > 0) config.models = state.models;
}

function* fileValues(file: Record<string, unknown>, path: string): Iterable<[Setting, unknown, string]> {
  for (const row of ROWS) {
    const key = fileKeyOf(row);
    if (key !== null && file[key] !== undefined) yield [row, file[key], `${path}: ${key}`];
  }
}

function* envValues(env: NodeJS.ProcessEnv): Iterable<[Setting, unknown, string]> {
  for (const row of ROWS) {
    const name = row.env.find((n) => env[n] !== undefined && env[n] !== "");
    if (name === undefined) continue;
    const value = env[name] as string;
    yield [row, row.parse.arg === "strings" ? value.split(",").map((s) => s.trim()).filter(Boolean) : value, name];
  }
}

function* flagValues(flags: ConfigFlags): Iterable<[Setting, unknown, string]> {
  for (const row of ROWS) {
    const value = row.flag === null ? undefined : (flags as Record<string, unknown>)[row.flag];
    if (value !== undefined) yield [row, value, `--${row.flag}`];
  }
}

/**
 * Settings from, lowest to highest precedence: defaults, the config file (--config, SMMF_CONFIG or
 * ./smmf.config.json), environment variables (SMMF_*), then command-line flags. What each setting is called in
 * each source, and how it is parsed, is in SETTINGS (settings.ts).
 */
export function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): SmmfConfig {
  const config: SmmfConfig = { ...DEFAULTS, modelPolicies: {} };
  const pathDefaults = ROWS.filter((row) => row.key !== null && row.parse.kind === "path" && typeof row.default === "string" && row.default !== "");
  for (const row of pathDefaults) set(config, row.key!, resolve(cwd, row.default as string));
  const state: LoadState = { models: [], noModels: false };
  const file = flags.config ?? env.SMMF_CONFIG ?? (existsSync(resolve(cwd, DEFAULT_CONFIG_FILE)) ? DEFAULT_CONFIG_FILE : undefined);
  if (file) {
    const path = resolve(cwd, file);
    const fromFile = readConfigFile(path);
    for (const row of pathDefaults) if (row.defaultBesideConfigFile && fromFile[row.key!] === undefined) set(config, row.key!, resolve(dirname(path), row.default as string));
    applySource(config, state, fileValues(fromFile, path), { kind: "file", baseDir: dirname(path), path });
  }
  applySource(config, state, envValues(env), { kind: "env", baseDir: cwd });
  applySource(config, state, flagValues(flags), { kind: "flag", baseDir: cwd });
  if (state.noModels) config.models = [];
  else if (config.models.length === 0) config.models = [DEFAULT_MODEL];
  for (const [i, m] of config.models.entries()) {
    if (typeof m !== "object" || m === null || typeof m.name !== "string" || !m.name) throw bad(`models[${i}] needs a 'name'`);
    const engine = m.engine ?? "llama.cpp";
    if (!ENGINE_NAMES.includes(engine)) throw bad(`models[${i}] ('${m.name}'): unknown engine '${engine}'; known engines: ${ENGINE_NAMES.join(", ")}`);
    if (isFileEngine(engine) && (typeof m.file !== "string" || !m.file)) throw bad(`models[${i}] ('${m.name}') needs a 'file' (a GGUF file)`);
  }
  return config;
}

/** The absolute path of a model's GGUF file. */
export function modelPath(config: SmmfConfig, model: ModelConfig): string {
  return isAbsolute(model.file) ? model.file : resolve(config.modelDir, model.file);
}
