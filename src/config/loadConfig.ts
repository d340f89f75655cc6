import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { SmmfError } from "../errors/SmmfError.js";
import { DEFAULT_STREAM_INTERVAL_MS } from "../worker/startWorker.js";
import { ENGINE_NAMES } from "../engines/proxyPresets.js";
import { parseUpstreamCredentials } from "../engines/parseUpstreamCredentials.js";
import type { ModelConfig, SmmfConfig } from "./SmmfConfig.js";

export const DEFAULT_MODEL: ModelConfig = { name: "stories260K", file: "stories260K.gguf" };
export const DEFAULT_CONFIG_FILE = "smmf.config.json";

export const DEFAULTS: SmmfConfig = {
  host: "127.0.0.1",
  port: 8000,
  workerHost: "127.0.0.1",
  workerPort: 0,
  modelDir: "models",
  models: [],
  threads: 0,
  sequences: 4,
  contextSize: 0,
  gpu: "auto",
  maxBodyBytes: 1024 * 1024,
  streamIntervalMs: DEFAULT_STREAM_INTERVAL_MS,
  logLevel: "info",
  shutdownGraceMs: 10_000,
  etcd: "",
  leaseTtlSeconds: 3,
  workerId: "",
  advertiseAddress: "",
  policy: "p2c",
  modelPolicies: {},
  maxAttempts: 3,
  queueSize: 256,
  queueTimeoutMs: 30_000,
  labels: {},
  maxMemoryMb: 0,
  sourceDirs: [],
  sourceHosts: [],
  sourceAllowPrivate: false,
  maxDownloadMb: 20 * 1024,
  downloadTimeoutMs: 30 * 60_000,
  controllerId: "",
  observability: "on",
  otlpEndpoint: "",
  requestLog: "on",
  requestLogCapture: "truncated",
  requestLogRetentionDays: 7,
  requestLogMaxRows: 100_000,
  dataDir: "data",
  auth: "auto",
  clusterSecretFile: "",
  corsOrigins: [],
  upstreamCredentials: [],
  tlsCert: "",
  tlsKey: "",
  tlsCa: "",
  tlsClientCert: "",
  tlsClientKey: "",
  etcdCa: "",
  etcdCert: "",
  etcdKey: "",
  etcdUser: "",
  etcdPasswordFile: "",
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 300_000,
  idleSocketTimeoutMs: 300_000,
  maxConnections: 4096,
  maxStreams: 256,
  maxMessages: 2048,
  maxPromptChars: 1_048_576,
  maxStopChars: 512,
  maxModels: 1000,
  maxReplicas: 256,
  maxInstancesPerWorker: 256,
  downloadCacheMb: 100 * 1024,
  requestLogMaxMb: 1024,
};

/** Command-line flags, as parsed by the CLI. */
export interface ConfigFlags {
  config?: string;
  host?: string;
  port?: string;
  "worker-host"?: string;
  "worker-port"?: string;
  "model-dir"?: string;
  model?: string[];
  threads?: string;
  sequences?: string;
  "context-size"?: string;
  gpu?: string;
  "max-body-bytes"?: string;
  "stream-interval-ms"?: string;
  "log-level"?: string;
  etcd?: string;
  "lease-ttl"?: string;
  "worker-id"?: string;
  advertise?: string;
  policy?: string;
  "model-policy"?: string[];
  "max-attempts"?: string;
  "queue-size"?: string;
  "queue-timeout-ms"?: string;
  "shutdown-grace-ms"?: string;
  label?: string[];
  "max-memory-mb"?: string;
  "source-dir"?: string[];
  "source-host"?: string[];
  "source-allow-private"?: string;
  "max-download-mb"?: string;
  "download-timeout-ms"?: string;
  "no-models"?: boolean;
  "controller-id"?: string;
  proxy?: string[];
  observability?: string;
  "otlp-endpoint"?: string;
  "request-log"?: string;
  "request-log-capture"?: string;
  "request-log-retention-days"?: string;
  "request-log-max-rows"?: string;
  "data-dir"?: string;
  auth?: string;
  "cluster-secret-file"?: string;
  "cors-origin"?: string[];
}

const ENV: Record<string, keyof ConfigFlags> = {
  SMMF_HOST: "host",
  SMMF_PORT: "port",
  SMMF_WORKER_HOST: "worker-host",
  SMMF_WORKER_PORT: "worker-port",
  SMMF_MODEL_DIR: "model-dir",
  SMMF_THREADS: "threads",
  SMMF_SEQUENCES: "sequences",
  SMMF_CONTEXT_SIZE: "context-size",
  SMMF_GPU: "gpu",
  SMMF_MAX_BODY_BYTES: "max-body-bytes",
  SMMF_STREAM_INTERVAL_MS: "stream-interval-ms",
  SMMF_LOG_LEVEL: "log-level",
  SMMF_ETCD: "etcd",
  SMMF_LEASE_TTL: "lease-ttl",
  SMMF_WORKER_ID: "worker-id",
  SMMF_ADVERTISE: "advertise",
  SMMF_POLICY: "policy",
  SMMF_MAX_ATTEMPTS: "max-attempts",
  SMMF_QUEUE_SIZE: "queue-size",
  SMMF_QUEUE_TIMEOUT_MS: "queue-timeout-ms",
  SMMF_SHUTDOWN_GRACE_MS: "shutdown-grace-ms",
  SMMF_MAX_MEMORY_MB: "max-memory-mb",
  // Comma-separated lists: split after the loop below (listed here so errors name them).
  SMMF_SOURCE_DIRS: "source-dir",
  SMMF_SOURCE_HOSTS: "source-host",
  SMMF_SOURCE_ALLOW_PRIVATE: "source-allow-private",
  SMMF_MAX_DOWNLOAD_MB: "max-download-mb",
  SMMF_DOWNLOAD_TIMEOUT_MS: "download-timeout-ms",
  SMMF_CONTROLLER_ID: "controller-id",
  SMMF_OBSERVABILITY: "observability",
  OTEL_EXPORTER_OTLP_ENDPOINT: "otlp-endpoint",
  SMMF_OTLP_ENDPOINT: "otlp-endpoint",
  SMMF_REQUEST_LOG: "request-log",
  SMMF_REQUEST_LOG_CAPTURE: "request-log-capture",
  SMMF_REQUEST_LOG_RETENTION_DAYS: "request-log-retention-days",
  SMMF_REQUEST_LOG_MAX_ROWS: "request-log-max-rows",
  SMMF_DATA_DIR: "data-dir",
  SMMF_AUTH: "auth",
  SMMF_CLUSTER_SECRET_FILE: "cluster-secret-file",
};

function bad(message: string): SmmfError {
  return new SmmfError("invalid_argument", message);
}

/** A CORS origin: "*" or scheme://host[:port], as browsers send it in Origin. */
function corsOrigin(name: string, value: string): string {
  const v = value.trim();
  if (v === "*" || /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/.test(v) || /^https?:\/\/\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(v)) return v;
  throw bad(`${name} takes an origin like https://app.example.com (scheme, host and port only) or *; got '${value}'`);
}

function integer(name: string, value: string | number, min: number, max: number): number {
  const n = typeof value === "number" ? value : /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw bad(`${name} must be an integer from ${min} to ${max}; got '${value}'`);
  return n;
}

/** `name=preset[@url]` pairs from --proxy flags or SMMF_PROXIES: a model served by an OpenAI-compatible upstream. */
function parseProxyPairs(pairs: string[], source: string): ModelConfig[] {
  return pairs.map((pair) => {
    const m = /^([^=]+)=([a-z.-]+)(?:@(.+))?$/.exec(pair);
    if (!m) throw bad(`${source} takes name=preset or name=preset@url (presets: ${ENGINE_NAMES.filter((e) => e !== "llama.cpp").join(", ")}); got '${pair}'`);
    return { name: m[1], engine: m[2], file: "", ...(m[3] ? { baseUrl: m[3] } : {}) };
  });
}

/** `name=path` pairs from --model flags or SMMF_MODELS. */
function parseModelPairs(pairs: string[], source: string): ModelConfig[] {
  return pairs.map((pair) => {
    const eq = pair.indexOf("=");
    if (eq <= 0 || eq === pair.length - 1) throw bad(`${source} takes name=path; got '${pair}'`);
    return { name: pair.slice(0, eq), file: pair.slice(eq + 1) };
  });
}

/** `key=value` pairs from --label flags or SMMF_LABELS. */
export function parseLabels(pairs: string[], source: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const key = pair.slice(0, eq);
    if (eq <= 0 || !/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/.test(key)) throw bad(`${source} takes key=value (key: letters, digits, '.', '_', '/', '-'); got '${pair}'`);
    labels[key] = pair.slice(eq + 1);
  }
  return labels;
}

function readConfigFile(path: string): Partial<SmmfConfig> {
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
  const known = new Set(Object.keys(DEFAULTS));
  for (const key of Object.keys(parsed)) if (!known.has(key)) throw bad(`unknown setting '${key}' in ${path}`);
  return parsed as Partial<SmmfConfig>;
}

/** Config-file keys by the flag that sets the same thing. */
const FILE_KEYS: Record<string, keyof SmmfConfig> = {
  host: "host",
  port: "port",
  "worker-host": "workerHost",
  "worker-port": "workerPort",
  "model-dir": "modelDir",
  threads: "threads",
  sequences: "sequences",
  "context-size": "contextSize",
  gpu: "gpu",
  "max-body-bytes": "maxBodyBytes",
  "stream-interval-ms": "streamIntervalMs",
  "log-level": "logLevel",
  etcd: "etcd",
  "lease-ttl": "leaseTtlSeconds",
  "worker-id": "workerId",
  advertise: "advertiseAddress",
  policy: "policy",
  "max-attempts": "maxAttempts",
  "queue-size": "queueSize",
  "queue-timeout-ms": "queueTimeoutMs",
  "shutdown-grace-ms": "shutdownGraceMs",
  "max-memory-mb": "maxMemoryMb",
  "max-download-mb": "maxDownloadMb",
  "download-timeout-ms": "downloadTimeoutMs",
  "controller-id": "controllerId",
  observability: "observability",
  "otlp-endpoint": "otlpEndpoint",
  "request-log": "requestLog",
  "request-log-capture": "requestLogCapture",
  "request-log-retention-days": "requestLogRetentionDays",
  "request-log-max-rows": "requestLogMaxRows",
  "data-dir": "dataDir",
  auth: "auth",
  "cluster-secret-file": "clusterSecretFile",
};

/** The file's scalar settings as flag strings, so they go through the same checks as flags. */
function fileSettingsAsFlags(file: Partial<SmmfConfig>, path: string): ConfigFlags {
  const flags: Record<string, string> = {};
  for (const [flag, key] of Object.entries(FILE_KEYS)) {
    const value = file[key];
    if (value === undefined) continue;
    if (typeof value !== "string" && typeof value !== "number") throw bad(`${path}: '${key}' must be a string or a number`);
    flags[flag] = String(value);
  }
  return flags as ConfigFlags;
}

function policyName(name: string, value: string): SmmfConfig["policy"] {
  if (value !== "p2c" && value !== "round-robin" && value !== "weighted") throw bad(`${name} must be p2c, round-robin or weighted; got '${value}'`);
  return value;
}

function applyFlags(config: SmmfConfig, flags: ConfigFlags, source: (flag: string) => string, baseDir: string): void {
  if (flags.host !== undefined) config.host = flags.host;
  if (flags.port !== undefined) config.port = integer(source("port"), flags.port, 0, 65535);
  if (flags["worker-host"] !== undefined) config.workerHost = flags["worker-host"];
  if (flags["worker-port"] !== undefined) config.workerPort = integer(source("worker-port"), flags["worker-port"], 0, 65535);
  if (flags["model-dir"] !== undefined) config.modelDir = resolve(baseDir, flags["model-dir"]);
  if (flags.threads !== undefined) config.threads = integer(source("threads"), flags.threads, 0, 1024);
  if (flags.sequences !== undefined) config.sequences = integer(source("sequences"), flags.sequences, 1, 1024);
  if (flags["context-size"] !== undefined) config.contextSize = integer(source("context-size"), flags["context-size"], 0, 1 << 24);
  if (flags["max-body-bytes"] !== undefined) config.maxBodyBytes = integer(source("max-body-bytes"), flags["max-body-bytes"], 1, 1 << 30);
  if (flags["stream-interval-ms"] !== undefined) config.streamIntervalMs = integer(source("stream-interval-ms"), flags["stream-interval-ms"], 0, 60_000);
  if (flags.gpu !== undefined) {
    if (flags.gpu !== "auto" && flags.gpu !== "off") throw bad(`${source("gpu")} must be 'auto' or 'off'`);
    config.gpu = flags.gpu;
  }
  if (flags["log-level"] !== undefined) {
    if (!["debug", "info", "warn", "error", "silent"].includes(flags["log-level"])) throw bad(`${source("log-level")} must be debug, info, warn, error or silent`);
    config.logLevel = flags["log-level"] as SmmfConfig["logLevel"];
  }
  if (flags.etcd !== undefined) config.etcd = flags.etcd;
  if (flags["lease-ttl"] !== undefined) config.leaseTtlSeconds = integer(source("lease-ttl"), flags["lease-ttl"], 1, 3600);
  if (flags["worker-id"] !== undefined) config.workerId = flags["worker-id"];
  if (flags.advertise !== undefined) config.advertiseAddress = flags.advertise;
  if (flags.policy !== undefined) config.policy = policyName(source("policy"), flags.policy);
  if (flags["model-policy"]) {
    for (const pair of flags["model-policy"]) {
      const eq = pair.indexOf("=");
      if (eq <= 0) throw bad(`${source("model-policy")} takes model=policy; got '${pair}'`);
      config.modelPolicies = { ...config.modelPolicies, [pair.slice(0, eq)]: policyName(source("model-policy"), pair.slice(eq + 1)) };
    }
  }
  if (flags["max-attempts"] !== undefined) config.maxAttempts = integer(source("max-attempts"), flags["max-attempts"], 1, 10);
  if (flags["queue-size"] !== undefined) config.queueSize = integer(source("queue-size"), flags["queue-size"], 0, 1_000_000);
  if (flags["queue-timeout-ms"] !== undefined) config.queueTimeoutMs = integer(source("queue-timeout-ms"), flags["queue-timeout-ms"], 0, 3_600_000);
  if (flags["shutdown-grace-ms"] !== undefined) config.shutdownGraceMs = integer(source("shutdown-grace-ms"), flags["shutdown-grace-ms"], 0, 3_600_000);
  if (flags["controller-id"] !== undefined) config.controllerId = flags["controller-id"];
  const oneOf = <T extends string>(flag: keyof ConfigFlags, values: readonly T[]): T | undefined => {
    const value = flags[flag] as string | undefined;
    if (value === undefined) return undefined;
    if (!(values as readonly string[]).includes(value)) throw bad(`${source(flag)} must be ${values.join(", ")}; got '${value}'`);
    return value as T;
  };
  config.observability = oneOf("observability", ["on", "off"] as const) ?? config.observability;
  config.auth = oneOf("auth", ["auto", "on", "off"] as const) ?? config.auth;
  if (flags["cluster-secret-file"] !== undefined) config.clusterSecretFile = resolve(baseDir, flags["cluster-secret-file"]);
  if (flags["cors-origin"] !== undefined) config.corsOrigins = flags["cors-origin"].map((o) => corsOrigin(source("cors-origin"), o));
  config.requestLog = oneOf("request-log", ["on", "off"] as const) ?? config.requestLog;
  config.requestLogCapture = oneOf("request-log-capture", ["full", "truncated", "off"] as const) ?? config.requestLogCapture;
  if (flags["otlp-endpoint"] !== undefined) config.otlpEndpoint = flags["otlp-endpoint"];
  if (flags["request-log-retention-days"] !== undefined) config.requestLogRetentionDays = integer(source("request-log-retention-days"), flags["request-log-retention-days"], 0, 36_500);
  if (flags["request-log-max-rows"] !== undefined) config.requestLogMaxRows = integer(source("request-log-max-rows"), flags["request-log-max-rows"], 0, 1_000_000_000);
  if (flags["data-dir"] !== undefined) config.dataDir = resolve(baseDir, flags["data-dir"]);
  if (flags["max-memory-mb"] !== undefined) config.maxMemoryMb = integer(source("max-memory-mb"), flags["max-memory-mb"], 0, 1 << 30);
  // Model-source policy (worker): which folders and hosts API callers' model sources may name.
  if (flags["source-dir"] !== undefined) config.sourceDirs = flags["source-dir"].map((dir) => resolve(baseDir, dir));
  if (flags["source-host"] !== undefined) {
    for (const host of flags["source-host"]) {
      const name = /^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$/.test(host);
      const ipv6 = /^\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?$/.test(host);
      if (!name && !ipv6) throw bad(`${source("source-host")} takes host names, IP addresses or *.suffix patterns; got '${host}'`);
    }
    config.sourceHosts = [...flags["source-host"]];
  }
  const allowPrivate = oneOf("source-allow-private", ["on", "off"] as const);
  if (allowPrivate !== undefined) config.sourceAllowPrivate = allowPrivate === "on";
  if (flags["max-download-mb"] !== undefined) config.maxDownloadMb = integer(source("max-download-mb"), flags["max-download-mb"], 1, 1 << 30);
  if (flags["download-timeout-ms"] !== undefined) config.downloadTimeoutMs = integer(source("download-timeout-ms"), flags["download-timeout-ms"], 1, 7 * 24 * 3_600_000);
  if (flags.label && flags.label.length > 0) config.labels = { ...config.labels, ...parseLabels(flags.label, source("label")) };
  const fromModels = flags.model?.length ? parseModelPairs(flags.model, source("model")).map((m) => ({ ...m, file: resolve(baseDir, m.file) })) : [];
  const fromProxies = flags.proxy?.length ? parseProxyPairs(flags.proxy, source("proxy")) : [];
  if (fromModels.length + fromProxies.length > 0) config.models = [...fromModels, ...fromProxies];
}

/**
 * Settings from, lowest to highest precedence: defaults, the config file (--config, SMMF_CONFIG or
 * ./smmf.config.json), environment variables (SMMF_*), then command-line flags.
 */
export function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): SmmfConfig {
  const config: SmmfConfig = { ...DEFAULTS, modelDir: resolve(cwd, DEFAULTS.modelDir), dataDir: resolve(cwd, DEFAULTS.dataDir), modelPolicies: {} };
  const file = flags.config ?? env.SMMF_CONFIG ?? (existsSync(resolve(cwd, DEFAULT_CONFIG_FILE)) ? DEFAULT_CONFIG_FILE : undefined);
  if (file) {
    const path = resolve(cwd, file);
    const fromFile = readConfigFile(path);
    applyFlags(config, fileSettingsAsFlags(fromFile, path), (flag) => `${path}: ${FILE_KEYS[flag] ?? flag}`, dirname(path));
    if (fromFile.modelDir === undefined) config.modelDir = resolve(dirname(path), DEFAULTS.modelDir);
    if (fromFile.modelPolicies !== undefined) {
      if (typeof fromFile.modelPolicies !== "object" || fromFile.modelPolicies === null) throw bad(`'modelPolicies' in ${path} must be an object`);
      for (const [model, policy] of Object.entries(fromFile.modelPolicies)) config.modelPolicies[model] = policyName(`${path}: modelPolicies.${model}`, String(policy));
    }
    if (fromFile.labels !== undefined) {
      if (typeof fromFile.labels !== "object" || fromFile.labels === null || Array.isArray(fromFile.labels)) throw bad(`'labels' in ${path} must be an object`);
      config.labels = parseLabels(Object.entries(fromFile.labels).map(([k, v]) => `${k}=${String(v)}`), `${path}: labels`);
    }
    if (fromFile.models !== undefined) {
      if (!Array.isArray(fromFile.models)) throw bad(`'models' in ${path} must be an array`);
      config.models = fromFile.models;
    }
    if (fromFile.corsOrigins !== undefined) {
      if (!Array.isArray(fromFile.corsOrigins)) throw bad(`'corsOrigins' in ${path} must be an array of origins`);
      config.corsOrigins = fromFile.corsOrigins.map((o) => corsOrigin(`${path}: corsOrigins`, String(o)));
    }
    // Model-source policy: lists and a boolean, read as the flags that set them (folders relative to the file's).
    const sourceFlags: ConfigFlags = {};
    for (const [key, flag] of [["sourceDirs", "source-dir"], ["sourceHosts", "source-host"]] as const) {
      const value: unknown = fromFile[key];
      if (value === undefined) continue;
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw bad(`'${key}' in ${path} must be an array of strings`);
      sourceFlags[flag] = value;
    }
    if (fromFile.sourceAllowPrivate !== undefined) {
      if (typeof fromFile.sourceAllowPrivate !== "boolean") throw bad(`'sourceAllowPrivate' in ${path} must be true or false`);
      sourceFlags["source-allow-private"] = fromFile.sourceAllowPrivate ? "on" : "off";
    }
    applyFlags(config, sourceFlags, (flag) => `${path}: ${({ "source-dir": "sourceDirs", "source-host": "sourceHosts" } as Record<string, string>)[flag] ?? flag}`, dirname(path));
    // Worker: named upstream API keys (config file only), files relative to the file's folder.
    if (fromFile.upstreamCredentials !== undefined) config.upstreamCredentials = parseUpstreamCredentials(fromFile.upstreamCredentials, path, dirname(path));
  }
  const envFlags: ConfigFlags = {};
  for (const [name, flag] of Object.entries(ENV)) if (env[name] !== undefined && env[name] !== "") (envFlags as Record<string, string>)[flag] = env[name] as string;
  if (env.SMMF_LABELS) envFlags.label = env.SMMF_LABELS.split(",").map((s) => s.trim()).filter(Boolean);
  if (env.SMMF_PROXIES) envFlags.proxy = env.SMMF_PROXIES.split(",").map((s) => s.trim()).filter(Boolean);
  if (env.SMMF_CORS_ORIGINS) envFlags["cors-origin"] = env.SMMF_CORS_ORIGINS.split(",").map((s) => s.trim()).filter(Boolean);
  if (env.SMMF_MODELS) envFlags.model = env.SMMF_MODELS.split(",").map((s) => s.trim()).filter(Boolean);
  if (env.SMMF_SOURCE_DIRS) envFlags["source-dir"] = env.SMMF_SOURCE_DIRS.split(",").map((s) => s.trim()).filter(Boolean);
  if (env.SMMF_SOURCE_HOSTS) envFlags["source-host"] = env.SMMF_SOURCE_HOSTS.split(",").map((s) => s.trim()).filter(Boolean);
  const envName = Object.fromEntries(Object.entries(ENV).map(([k, v]) => [v, k]));
  applyFlags(config, envFlags, (flag) => ({ model: "SMMF_MODELS", label: "SMMF_LABELS", proxy: "SMMF_PROXIES" })[flag] ?? envName[flag], cwd);
  applyFlags(config, flags, (flag) => `--${flag}`, cwd);
  if (flags["no-models"] || env.SMMF_NO_MODELS === "1") config.models = [];
  else if (config.models.length === 0) config.models = [DEFAULT_MODEL];
  for (const [i, m] of config.models.entries()) {
    if (typeof m !== "object" || m === null || typeof m.name !== "string" || !m.name) throw bad(`models[${i}] needs a 'name'`);
    const engine = m.engine ?? "llama.cpp";
    if (!ENGINE_NAMES.includes(engine)) throw bad(`models[${i}] ('${m.name}'): unknown engine '${engine}'; known engines: ${ENGINE_NAMES.join(", ")}`);
    if (engine === "llama.cpp" && (typeof m.file !== "string" || !m.file)) throw bad(`models[${i}] ('${m.name}') needs a 'file' (a GGUF file)`);
  }
  return config;
}

/** The absolute path of a model's GGUF file. */
export function modelPath(config: SmmfConfig, model: ModelConfig): string {
  return isAbsolute(model.file) ? model.file : resolve(config.modelDir, model.file);
}
