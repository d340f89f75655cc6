// Every setting of SMMF, declared once: its config key, flag, environment variables, config-file key, default,
// parser, help text and help section. The CLI's parseArgs options and --help text (settingsCli.ts), the
// environment reader and config-file loader (loadConfig.ts) and the README's configuration table
// (settingsReadme.ts, `npm run docs:settings`) are all made from SETTINGS.
import { resolve } from "node:path";
import { SmmfError } from "../errors/SmmfError.js";
import { DEFAULT_STREAM_INTERVAL_MS } from "../worker/streamInterval.js";
import { ENGINE_NAMES, LLAMA_SERVER_ENGINE, isFileEngine } from "../engines/proxyPresets.js";
import { parseUpstreamCredentials } from "../engines/parseUpstreamCredentials.js";
import type { ModelConfig, SmmfConfig } from "./SmmfConfig.js";

/** The commands that take settings. */
export type Command = "serve" | "worker" | "gateway" | "controller";
export const COMMANDS: readonly Command[] = ["serve", "worker", "gateway", "controller"];

/** The sections of --help (the roles a setting applies to), in order, with the commands whose help shows them. */
export type Section = "common" | "gateway" | "worker" | "observability" | "security" | "controller";
export const SECTIONS: Record<Section, { title: string; commands: readonly Command[] }> = {
  common: { title: "Common", commands: COMMANDS },
  gateway: { title: "Gateway and controller (and serve)", commands: ["serve", "gateway", "controller"] },
  worker: { title: "Worker (and serve)", commands: ["serve", "worker"] },
  observability: { title: "Observability", commands: COMMANDS },
  security: { title: "Security and TLS", commands: COMMANDS },
  controller: { title: "Controller", commands: ["controller"] },
};

/** What one source (the config file, the environment, the flags) contributes while a config is loaded. */
export interface LoadState {
  /** Models from --model and --proxy (or SMMF_MODELS and SMMF_PROXIES) of the source being read: together they replace the models. */
  models: ModelConfig[];
  /** --no-models or SMMF_NO_MODELS=1 was given (wins over every source's models). */
  noModels: boolean;
}

/** Where a value being read comes from. */
export interface ValueSource {
  kind: "file" | "env" | "flag";
  /** How messages name the setting: `--port`, `SMMF_PORT`, `/etc/smmf.json: port`. */
  name: string;
  /** Relative paths resolve against this: the config file's folder, or the working directory. */
  baseDir: string;
  /** The config file (kind "file"). */
  path?: string;
  load: LoadState;
}

/**
 * How a flag takes its value: "string" (one value; an environment variable and a config-file key give one too),
 * "strings" (repeatable flag; comma-separated environment variable; JSON array or object in the file), "switch"
 * (a flag without a value).
 */
export type ArgKind = "string" | "strings" | "switch";

export interface IntegerParse {
  kind: "integer";
  arg: "string";
  min: number;
  max: number;
}
export interface EnumParse {
  kind: "enum";
  arg: "string";
  values: readonly string[];
}
export interface StringParse {
  kind: "string";
  arg: "string";
}
/** A file or folder: relative ones resolve against the config file's folder (in the file) or the working directory. */
export interface PathParse {
  kind: "path";
  arg: "string";
}
/** A boolean: on/off in flags and the environment, true/false in the file. */
export interface OnOffParse {
  kind: "on/off";
  arg: "string";
}
/** A list: a repeatable flag, a comma-separated environment variable, a JSON array of strings in the file. A source replaces the list. */
export interface ListParse {
  kind: "list";
  arg: "strings";
  /** Checks (and maybe resolves) one item. */
  item: (name: string, value: string, baseDir: string) => string;
  /** Valid items, for tests. */
  example: readonly string[];
}
/** A key=value map: a repeatable flag, a comma-separated environment variable, a JSON object in the file. Sources add to it. */
export interface MapParse {
  kind: "map";
  arg: "strings";
  /** What a pair looks like, for errors: "key=value". */
  hint: string;
  key?: RegExp;
  value: (name: string, value: string) => string;
  /** Valid pairs, for tests. */
  example: readonly string[];
}
/** A setting that does not fit the kinds above (models, --proxy, --no-models, --config, upstreamCredentials). */
export interface CustomParse {
  kind: "custom";
  arg: ArgKind;
  /** Applies a value: the flag's (string, string[] or true), the environment variable's (split at commas when arg is "strings") or the file's (any JSON). */
  read: (config: SmmfConfig, raw: unknown, source: ValueSource) => void;
}
export type Parse = IntegerParse | EnumParse | StringParse | PathParse | OnOffParse | ListParse | MapParse | CustomParse;

/** One row of the table. */
export interface Setting {
  /** The SmmfConfig field it sets; null for --config, --proxy and --no-models (they steer other fields). */
  key: keyof SmmfConfig | null;
  /** The flag, without "--"; null: none (config file only). */
  flag: string | null;
  /** The flag's value in --help (default by kind: N, on|off, the enum's values, FILE, VALUE, KEY=VALUE). */
  metavar?: string;
  /** Environment variables, the first set (non-empty) one wins. */
  env: readonly string[];
  /** false: no config-file key (else the file key is `key`). */
  file?: boolean;
  /** The default (SmmfConfig's), when key is set. */
  default?: unknown;
  /** How --help and the README show the default when not the value itself (markdown; backticks are dropped in --help). */
  defaultText?: string;
  /** Path settings: the default is resolved beside the config file when one is read (else against the working directory). */
  defaultBesideConfigFile?: boolean;
  parse: Parse;
  /** The --help section (the roles it applies to). */
  section: Section;
  /** What it does (markdown; backticks are dropped in --help). */
  help: string;
  /** More for the README only (e.g. a link). */
  readmeMore?: string;
  /** README cells, when the generated ones do not say it well. */
  readmeEnv?: string;
  readmeFile?: string;
  /** false: left out of the README's table. */
  readme?: boolean;
}

type RowInput<K, F, P> = Omit<Setting, "key" | "flag" | "parse" | "default"> & { key: K; flag: F; parse: P } & (K extends keyof SmmfConfig
    ? { default: SmmfConfig[K] }
    : { default?: undefined });

/** A row, with its default checked against SmmfConfig's type and its flag's name and kind kept for ConfigFlags. */
function setting<const K extends keyof SmmfConfig | null, const F extends string | null, const P extends Parse>(row: RowInput<K, F, P>): RowInput<K, F, P> {
  return row;
}

export function bad(message: string): SmmfError {
  return new SmmfError("invalid_argument", message);
}

function integer(min: number, max: number): IntegerParse {
  return { kind: "integer", arg: "string", min, max };
}
function oneOf(...values: string[]): EnumParse {
  return { kind: "enum", arg: "string", values };
}
const STRING: StringParse = { kind: "string", arg: "string" };
const PATH: PathParse = { kind: "path", arg: "string" };
const ON_OFF: OnOffParse = { kind: "on/off", arg: "string" };

/** An integer from min to max, written in decimal digits. */
export function parseInteger(name: string, value: string | number, min: number, max: number): number {
  const n = typeof value === "number" ? value : /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw bad(`${name} must be an integer from ${min} to ${max}; got '${value}'`);
  return n;
}

export function parseEnum(name: string, value: string, values: readonly string[]): string {
  if (!values.includes(value)) throw bad(`${name} must be ${values.join(", ")}; got '${value}'`);
  return value;
}

const POLICIES = ["prefix", "p2c", "round-robin", "weighted"] as const;

/** A CORS origin: "*" or scheme://host[:port], as browsers send it in Origin. */
function corsOrigin(name: string, value: string): string {
  const v = value.trim();
  if (v === "*" || /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/.test(v) || /^https?:\/\/\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(v)) return v;
  throw bad(`${name} takes an origin like https://app.example.com (scheme, host and port only) or *; got '${value}'`);
}

/** A host http(s) model sources may come from: a name, an IP literal or *.suffix. */
function sourceHost(name: string, host: string): string {
  const isName = /^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$/.test(host);
  const ipv6 = /^\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?$/.test(host);
  if (!isName && !ipv6) throw bad(`${name} takes host names, IP addresses or *.suffix patterns; got '${host}'`);
  return host;
}

const LABELS: MapParse = {
  kind: "map",
  arg: "strings",
  hint: "key=value (key: letters, digits, '.', '_', '/', '-')",
  key: /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/,
  value: (_name, value) => value,
  example: ["zone=a", "gpu=h100"],
};

/** The entries of a map setting: [key, value] from a `key=value` pair, or from a JSON object. `name` names the source in errors. */
export function parseEntries(parse: MapParse, entries: Iterable<readonly [string, string]>, name: string): Record<string, string> {
  const map: Record<string, string> = {};
  for (const [key, value] of entries) {
    if (key === "" || (parse.key && !parse.key.test(key))) throw bad(`${name} takes ${parse.hint}; got '${key}=${value}'`);
    map[key] = parse.value(name, value);
  }
  return map;
}

/** `key=value` pairs of a map setting (split at the first '='); `name` names the source in errors. */
export function parsePairs(parse: MapParse, pairs: readonly string[], name: string): Record<string, string> {
  return parseEntries(
    parse,
    pairs.map((pair) => {
      const eq = pair.indexOf("=");
      if (eq <= 0) throw bad(`${name} takes ${parse.hint}; got '${pair}'`);
      return [pair.slice(0, eq), pair.slice(eq + 1)] as const;
    }),
    name,
  );
}

/** `key=value` pairs from --label flags or SMMF_LABELS. */
export function parseLabels(pairs: string[], source: string): Record<string, string> {
  return parsePairs(LABELS, pairs, source);
}

/** `name=path` pairs from --model flags or SMMF_MODELS. */
function parseModelPairs(pairs: string[], source: string): ModelConfig[] {
  return pairs.map((pair) => {
    const eq = pair.indexOf("=");
    if (eq <= 0 || eq === pair.length - 1) throw bad(`${source} takes name=path; got '${pair}'`);
    return { name: pair.slice(0, eq), file: pair.slice(eq + 1) };
  });
}

const PROXY_PRESETS = () => ENGINE_NAMES.filter((e) => !isFileEngine(e));

/** `name=preset[@url]` pairs from --proxy flags or SMMF_PROXIES: a model served by an OpenAI-compatible upstream. */
function parseProxyPairs(pairs: string[], source: string): ModelConfig[] {
  return pairs.map((pair) => {
    const m = /^([^=]+)=([a-z.-]+)(?:@(.+))?$/.exec(pair);
    if (!m) throw bad(`${source} takes name=preset or name=preset@url (presets: ${PROXY_PRESETS().join(", ")}); got '${pair}'`);
    return { name: m[1], engine: m[2], file: "", ...(m[3] ? { baseUrl: m[3] } : {}) };
  });
}

const UPSTREAM_ENGINES_LINK = "(see [Upstream engines](#upstream-engines-vllm-tgi-llama-server-ollama-openai-azure))";

export const SETTINGS = [
  // ---- Common -------------------------------------------------------------------------------------------
  setting({
    key: null,
    flag: "config",
    metavar: "FILE",
    env: ["SMMF_CONFIG"],
    file: false,
    defaultText: "`./smmf.config.json` when present",
    // loadConfig reads it first, to find the file.
    parse: { kind: "custom", arg: "string", read: () => {} },
    section: "common",
    help: "config file (JSON), whose keys are the settings' config-file keys",
  }),
  setting({
    key: "logLevel",
    flag: "log-level",
    metavar: "LEVEL",
    env: ["SMMF_LOG_LEVEL"],
    default: "info",
    parse: oneOf("debug", "info", "warn", "error", "silent"),
    section: "common",
    help: "`debug`, `info`, `warn`, `error` or `silent`; logs are JSON lines on stderr",
  }),
  setting({
    key: "etcd",
    flag: "etcd",
    metavar: "URLS",
    env: ["SMMF_ETCD"],
    default: "",
    parse: STRING,
    section: "common",
    help: "etcd endpoints, comma-separated, for the distributed mode: worker, gateway, controller",
  }),
  setting({
    key: "leaseTtlSeconds",
    flag: "lease-ttl",
    metavar: "SECONDS",
    env: ["SMMF_LEASE_TTL"],
    default: 3,
    parse: integer(1, 3600),
    section: "common",
    help: "TTL of a worker's (or the leading controller's) etcd lease: a dead worker or leader is replaced within about this long",
  }),
  setting({
    key: "shutdownGraceMs",
    flag: "shutdown-grace-ms",
    env: ["SMMF_SHUTDOWN_GRACE_MS"],
    default: 10_000,
    parse: integer(0, 3_600_000),
    section: "common",
    help: "on SIGTERM or SIGINT, how long requests in flight may take to finish (a worker's drain), in ms",
  }),
  setting({
    key: "dataDir",
    flag: "data-dir",
    metavar: "DIR",
    env: ["SMMF_DATA_DIR"],
    default: "data",
    defaultText: "`./data`",
    parse: PATH,
    section: "common",
    help: "SMMF's own files: the request log, the API keys of `smmf serve` (`keys.json`), models downloaded from http(s) sources",
  }),
  setting({
    key: "headersTimeoutMs",
    flag: "headers-timeout-ms",
    env: ["SMMF_HEADERS_TIMEOUT_MS"],
    default: 30_000,
    parse: integer(1, 3_600_000),
    section: "common",
    help: "longest wait for a request's headers, in ms",
  }),
  setting({
    key: "requestTimeoutMs",
    flag: "request-timeout-ms",
    env: ["SMMF_REQUEST_TIMEOUT_MS"],
    default: 300_000,
    parse: integer(1, 86_400_000),
    section: "common",
    help: "longest wait for a whole request (headers and body, not the answer), in ms",
  }),
  setting({
    key: "idleSocketTimeoutMs",
    flag: "idle-socket-timeout-ms",
    env: ["SMMF_IDLE_SOCKET_TIMEOUT_MS"],
    default: 300_000,
    parse: integer(0, 86_400_000),
    section: "common",
    help: "a connection with no request in flight and no traffic is closed after this many ms; `0` = never",
  }),
  setting({
    key: "maxConnections",
    flag: "max-connections",
    env: ["SMMF_MAX_CONNECTIONS"],
    default: 4096,
    parse: integer(1, 1_000_000),
    section: "common",
    help: "most open connections per listener; more are closed at once",
  }),
  setting({
    key: "maxStreams",
    flag: "max-streams",
    env: ["SMMF_MAX_STREAMS"],
    default: 256,
    parse: integer(1, 100_000),
    section: "common",
    help: "most concurrent HTTP/2 streams on one connection",
  }),

  // ---- Gateway and controller ---------------------------------------------------------------------------
  setting({
    key: "host",
    flag: "host",
    metavar: "HOST",
    env: ["SMMF_HOST"],
    default: "127.0.0.1",
    parse: STRING,
    section: "gateway",
    help: "listen host of the gateway or controller",
  }),
  setting({
    key: "port",
    flag: "port",
    metavar: "PORT",
    env: ["SMMF_PORT"],
    default: 8000,
    parse: integer(0, 65535),
    section: "gateway",
    help: "listen port of the gateway or controller",
  }),
  setting({
    key: "maxBodyBytes",
    flag: "max-body-bytes",
    env: ["SMMF_MAX_BODY_BYTES"],
    default: 1024 * 1024,
    parse: integer(1, 1 << 30),
    section: "gateway",
    help: "largest request body, in bytes",
  }),
  setting({
    key: "policy",
    flag: "policy",
    metavar: "NAME",
    env: ["SMMF_POLICY"],
    default: "prefix",
    parse: oneOf(...POLICIES),
    section: "gateway",
    help: "load-balancing policy: `prefix` (p2c that keeps conversations where their prefix is cached), `p2c`, `round-robin` or `weighted`",
  }),
  setting({
    key: "modelPolicies",
    flag: "model-policy",
    metavar: "MODEL=POLICY",
    env: ["SMMF_MODEL_POLICIES"],
    default: {},
    parse: {
      kind: "map",
      arg: "strings",
      hint: "model=policy",
      value: (name, value) => parseEnum(name, value, POLICIES),
      example: ["chat=round-robin", "embed=weighted"],
    },
    section: "gateway",
    help: "load-balancing policy of one model",
  }),
  setting({
    key: "maxAttempts",
    flag: "max-attempts",
    env: ["SMMF_MAX_ATTEMPTS"],
    default: 3,
    parse: integer(1, 10),
    section: "gateway",
    help: "tries per request, the first included",
  }),
  setting({
    key: "queueSize",
    flag: "queue-size",
    env: ["SMMF_QUEUE_SIZE"],
    default: 256,
    parse: integer(0, 1_000_000),
    section: "gateway",
    help: "requests of a model that may wait when all its instances are full; more get 429",
  }),
  setting({
    key: "queueTimeoutMs",
    flag: "queue-timeout-ms",
    env: ["SMMF_QUEUE_TIMEOUT_MS"],
    default: 30_000,
    parse: integer(0, 3_600_000),
    section: "gateway",
    help: "longest wait for a free instance before 503, in ms",
  }),
  setting({
    key: "maxMessages",
    flag: "max-messages",
    env: ["SMMF_MAX_MESSAGES"],
    default: 2048,
    parse: integer(1, 1_000_000),
    section: "gateway",
    help: "gateway: most messages in one chat request",
  }),
  setting({
    key: "maxPromptChars",
    flag: "max-prompt-chars",
    env: ["SMMF_MAX_PROMPT_CHARS"],
    default: 1_048_576,
    parse: integer(1, 1_000_000_000),
    section: "gateway",
    help: "gateway: most characters of prompt in one request (all messages together), checked before tokenizing",
  }),
  setting({
    key: "maxStopChars",
    flag: "max-stop-chars",
    env: ["SMMF_MAX_STOP_CHARS"],
    default: 512,
    parse: integer(1, 1_000_000),
    section: "gateway",
    help: "gateway: longest stop string, in characters; at most 4 stop strings (as OpenAI)",
  }),

  // ---- Worker --------------------------------------------------------------------------------------------
  setting({
    key: "workerHost",
    flag: "worker-host",
    metavar: "HOST",
    env: ["SMMF_WORKER_HOST"],
    default: "127.0.0.1",
    parse: STRING,
    section: "worker",
    help: "listen host of the worker's gRPC port",
  }),
  setting({
    key: "workerPort",
    flag: "worker-port",
    metavar: "PORT",
    env: ["SMMF_WORKER_PORT"],
    default: 0,
    parse: integer(0, 65535),
    section: "worker",
    help: "the worker's gRPC port; `0` = any free port",
  }),
  setting({
    key: "advertiseAddress",
    flag: "advertise",
    metavar: "URL",
    env: ["SMMF_ADVERTISE"],
    default: "",
    defaultText: "`http://workerHost:workerPort`",
    parse: STRING,
    section: "worker",
    help: "address gateways and controllers reach this worker at",
  }),
  setting({
    key: "workerId",
    flag: "worker-id",
    metavar: "ID",
    env: ["SMMF_WORKER_ID"],
    default: "",
    defaultText: "random",
    parse: STRING,
    section: "worker",
    help: "worker id",
  }),
  setting({
    key: "modelDir",
    flag: "model-dir",
    metavar: "DIR",
    env: ["SMMF_MODEL_DIR"],
    default: "models",
    defaultText: "`./models`, beside the config file when one is read",
    defaultBesideConfigFile: true,
    parse: PATH,
    section: "worker",
    help: "folder with GGUF files: models' relative files are looked up in it",
  }),
  setting({
    key: "models",
    flag: "model",
    metavar: "NAME=PATH",
    env: ["SMMF_MODELS"],
    default: [],
    defaultText: "`stories260K=stories260K.gguf`",
    parse: {
      kind: "custom",
      arg: "strings",
      read: (config, raw, source) => {
        if (source.kind === "file") {
          if (!Array.isArray(raw)) throw bad(`'models' in ${source.path} must be an array`);
          config.models = raw as ModelConfig[];
        } else {
          source.load.models.push(...parseModelPairs(raw as string[], source.name).map((m) => ({ ...m, file: resolve(source.baseDir, m.file) })));
        }
      },
    },
    section: "worker",
    help: "serve a GGUF file under NAME; in the config file, `models` holds objects that may also set `contextSize`, `sequences`, `threads`, `gpuLayers`, `embeddings`, `chatTemplate`, `prefixCache` and `weight` per model",
  }),
  setting({
    key: null,
    flag: "proxy",
    metavar: "NAME=PRESET[@URL]",
    env: ["SMMF_PROXIES"],
    file: false,
    readmeFile: "`models[].engine` …",
    readmeEnv: "`SMMF_PROXIES` (`name=preset[@url],…`)",
    parse: {
      kind: "custom",
      arg: "strings",
      read: (_config, raw, source) => {
        source.load.models.push(...parseProxyPairs(raw as string[], source.name));
      },
    },
    section: "worker",
    help: `serve NAME from an OpenAI-compatible upstream: ${PROXY_PRESETS().join(", ")}; more settings (API key, timeouts, ...) in the config file's \`models\``,
    readmeMore: UPSTREAM_ENGINES_LINK,
  }),
  setting({
    key: null,
    flag: "no-models",
    env: ["SMMF_NO_MODELS"],
    file: false,
    readmeEnv: "`SMMF_NO_MODELS=1`",
    parse: {
      kind: "custom",
      arg: "switch",
      read: (_config, raw, source) => {
        if (source.kind === "flag" ? raw === true : raw === "1") source.load.noModels = true;
      },
    },
    section: "worker",
    help: "load no configured models: host only what the controller places",
  }),
  setting({
    key: "engine",
    flag: "engine",
    env: ["SMMF_ENGINE"],
    default: "llama.cpp",
    parse: oneOf("llama.cpp", LLAMA_SERVER_ENGINE),
    section: "worker",
    help: `engine of the GGUF models that name none: llama.cpp (node-llama-cpp, in the worker's process) or ${LLAMA_SERVER_ENGINE} (llama.cpp's own server, a child process per instance; build it first with \`smmf engine build ${LLAMA_SERVER_ENGINE}\`)`,
  }),
  setting({
    key: "threads",
    flag: "threads",
    env: ["SMMF_THREADS"],
    default: 0,
    defaultText: "`0` = 1 on ≤ 2 cores, else half the cores, at most 16",
    parse: integer(0, 1024),
    section: "worker",
    help: "CPU threads per llama.cpp instance",
  }),
  setting({
    key: "sequences",
    flag: "sequences",
    env: ["SMMF_SEQUENCES"],
    default: 4,
    parse: integer(1, 1024),
    section: "worker",
    help: "concurrent generations per instance",
  }),
  setting({
    key: "contextSize",
    flag: "context-size",
    env: ["SMMF_CONTEXT_SIZE"],
    default: 0,
    defaultText: "`0` = the model's, at most 4096",
    parse: integer(0, 1 << 24),
    section: "worker",
    help: "context tokens per sequence",
  }),
  setting({
    key: "gpu",
    flag: "gpu",
    env: ["SMMF_GPU"],
    default: "auto",
    parse: oneOf("auto", "off"),
    section: "worker",
    help: "`auto` uses a usable GPU (CUDA, Vulkan, Metal), `off` never",
  }),
  setting({
    key: "streamIntervalMs",
    flag: "stream-interval-ms",
    env: ["SMMF_STREAM_INTERVAL_MS"],
    default: DEFAULT_STREAM_INTERVAL_MS,
    parse: integer(0, 60_000),
    section: "worker",
    help:
      "the first token goes out at once; tokens made within this many ms of the last streamed message are sent together " +
      "(still one SSE chunk per token); `0` sends each token on its own",
  }),
  setting({
    key: "labels",
    flag: "label",
    metavar: "KEY=VALUE",
    env: ["SMMF_LABELS"],
    default: {},
    parse: LABELS,
    section: "worker",
    help: "a worker label, which the controller's placement can ask for",
  }),
  setting({
    key: "maxMemoryMb",
    flag: "max-memory-mb",
    env: ["SMMF_MAX_MEMORY_MB"],
    default: 0,
    defaultText: "`0` = the machine's",
    parse: integer(0, 1 << 30),
    section: "worker",
    help: "memory offered to model instances, in MiB",
  }),
  setting({
    key: "maxInstancesPerWorker",
    flag: "max-instances-per-worker",
    env: ["SMMF_MAX_INSTANCES_PER_WORKER"],
    default: 256,
    parse: integer(1, 1_000_000),
    section: "worker",
    help: "most model instances a worker hosts at once",
  }),
  setting({
    key: "sourceDirs",
    flag: "source-dir",
    metavar: "DIR",
    env: ["SMMF_SOURCE_DIRS"],
    default: [],
    parse: { kind: "list", arg: "strings", item: (_name, value, baseDir) => resolve(baseDir, value), example: ["shared/models", "/srv/gguf"] },
    section: "worker",
    help: "model sources (the operator's, never a caller's, choice): a folder (or file) besides the model folder that local sources may lie in",
  }),
  setting({
    key: "sourceHosts",
    flag: "source-host",
    metavar: "HOST",
    env: ["SMMF_SOURCE_HOSTS"],
    default: [],
    defaultText: "none: http(s) sources are refused",
    parse: { kind: "list", arg: "strings", item: (name, value) => sourceHost(name, value), example: ["huggingface.co", "*.example.com"] },
    section: "worker",
    help: "model sources: a host http(s) sources may come from: a name, an IP literal or `*.suffix`",
  }),
  setting({
    key: "sourceAllowPrivate",
    flag: "source-allow-private",
    env: ["SMMF_SOURCE_ALLOW_PRIVATE"],
    default: false,
    parse: ON_OFF,
    section: "worker",
    help: "model sources: let downloads reach loopback, private and link-local addresses; cloud metadata addresses only when listed exactly",
  }),
  setting({
    key: "maxDownloadMb",
    flag: "max-download-mb",
    env: ["SMMF_MAX_DOWNLOAD_MB"],
    default: 20 * 1024,
    parse: integer(1, 1 << 30),
    section: "worker",
    help: "largest model download, in MiB",
  }),
  setting({
    key: "downloadTimeoutMs",
    flag: "download-timeout-ms",
    env: ["SMMF_DOWNLOAD_TIMEOUT_MS"],
    default: 30 * 60_000,
    parse: integer(1, 7 * 24 * 3_600_000),
    section: "worker",
    help: "longest model download, in ms",
  }),
  setting({
    key: "downloadCacheMb",
    flag: "download-cache-mb",
    env: ["SMMF_DOWNLOAD_CACHE_MB"],
    default: 100 * 1024,
    parse: integer(1, 1 << 30),
    section: "worker",
    help: "downloaded model files kept, in MiB; unused ones are evicted oldest-used first",
  }),
  setting({
    key: "upstreamCredentials",
    flag: null,
    env: [],
    default: [],
    defaultText: "none",
    parse: {
      kind: "custom",
      arg: "string",
      read: (config, raw, source) => {
        config.upstreamCredentials = parseUpstreamCredentials(raw, source.path ?? source.name, source.baseDir);
      },
    },
    section: "worker",
    help:
      'named upstream API keys (config file only): `[{ "name", "env" or "file", "allowedBaseUrls": [...] }]`, files ' +
      "relative to the config file; models name them in `credential`",
    readmeMore: UPSTREAM_ENGINES_LINK,
  }),

  // ---- Observability --------------------------------------------------------------------------------------
  setting({
    key: "observability",
    flag: "observability",
    env: ["SMMF_OBSERVABILITY"],
    default: "on",
    parse: oneOf("on", "off"),
    section: "observability",
    help: "`off`: no metrics per request, no traces, no request log; process metrics stay",
  }),
  setting({
    key: "otlpEndpoint",
    flag: "otlp-endpoint",
    metavar: "URL",
    env: ["SMMF_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"],
    default: "",
    parse: STRING,
    section: "observability",
    help: "OTLP/HTTP collector traces are sent to, e.g. `http://127.0.0.1:4318`; empty: no traces",
  }),
  setting({
    key: "requestLog",
    flag: "request-log",
    env: ["SMMF_REQUEST_LOG"],
    default: "on",
    parse: oneOf("on", "off"),
    section: "observability",
    help: "gateway: keep the request log",
  }),
  setting({
    key: "requestLogCapture",
    flag: "request-log-capture",
    env: ["SMMF_REQUEST_LOG_CAPTURE"],
    default: "truncated",
    parse: oneOf("full", "truncated", "off"),
    section: "observability",
    help: "how much of prompts and outputs the request log keeps: `full`, `truncated` (2,000 characters) or `off`",
  }),
  setting({
    key: "requestLogRetentionDays",
    flag: "request-log-retention-days",
    metavar: "DAYS",
    env: ["SMMF_REQUEST_LOG_RETENTION_DAYS"],
    default: 7,
    parse: integer(0, 36_500),
    section: "observability",
    help: "age limit of request-log rows, in days",
  }),
  setting({
    key: "requestLogMaxRows",
    flag: "request-log-max-rows",
    env: ["SMMF_REQUEST_LOG_MAX_ROWS"],
    default: 100_000,
    parse: integer(0, 1_000_000_000),
    section: "observability",
    help: "row limit of the request log",
  }),
  setting({
    key: "requestLogMaxMb",
    flag: "request-log-max-mb",
    env: ["SMMF_REQUEST_LOG_MAX_MB"],
    default: 1024,
    parse: integer(1, 1 << 30),
    section: "observability",
    help: "gateway: the request log's largest size on disk, in MiB; oldest rows go first",
  }),

  // ---- Security and TLS -----------------------------------------------------------------------------------
  setting({
    key: "auth",
    flag: "auth",
    env: ["SMMF_AUTH"],
    default: "auto",
    parse: oneOf("auto", "on", "off"),
    section: "security",
    help:
      "API keys: `auto` checks them once a key exists, and always when listening beyond loopback (such a server " +
      "with no key refuses to start); `on` always; `off` never (warned at every start). Keys: `smmf key --help`",
  }),
  setting({
    key: "clusterSecretFile",
    flag: "cluster-secret-file",
    metavar: "FILE",
    env: ["SMMF_CLUSTER_SECRET_FILE"],
    readmeEnv: "`SMMF_CLUSTER_SECRET_FILE` (or the secret itself in `SMMF_CLUSTER_SECRET`)",
    default: "",
    parse: PATH,
    section: "security",
    help:
      "the cluster credential: a secret (16+ characters) every SMMF process of a cluster shares; workers answer only " +
      "callers that present it (`SMMF_CLUSTER_SECRET` may hold the secret itself, and wins). A worker listening beyond " +
      "loopback without one refuses to start; `smmf serve` makes its own",
  }),
  setting({
    key: "corsOrigins",
    flag: "cors-origin",
    metavar: "ORIGIN",
    env: ["SMMF_CORS_ORIGINS"],
    default: [],
    defaultText: "none: no CORS",
    parse: { kind: "list", arg: "strings", item: (name, value) => corsOrigin(name, value), example: ["https://app.example.com", "http://localhost:3000"] },
    section: "security",
    help: "gateway: a web origin (`https://host[:port]`, or `*`) allowed to call the API from a browser",
  }),
  setting({
    key: "tlsCert",
    flag: "tls-cert",
    metavar: "FILE",
    env: ["SMMF_TLS_CERT"],
    default: "",
    parse: PATH,
    section: "security",
    help: "PEM certificate chain this process's listener serves: gateways and controllers serve HTTPS and h2, workers too; empty: cleartext",
  }),
  setting({
    key: "tlsKey",
    flag: "tls-key",
    metavar: "FILE",
    env: ["SMMF_TLS_KEY"],
    default: "",
    parse: PATH,
    section: "security",
    help: "PEM private key of `--tls-cert`",
  }),
  setting({
    key: "tlsCa",
    flag: "tls-ca",
    metavar: "FILE",
    env: ["SMMF_TLS_CA"],
    default: "",
    parse: PATH,
    section: "security",
    help: "PEM CA bundle of the cluster's mTLS: workers require client certificates from it; gateways and controllers verify workers with it",
  }),
  setting({
    key: "tlsClientCert",
    flag: "tls-client-cert",
    metavar: "FILE",
    env: ["SMMF_TLS_CLIENT_CERT"],
    default: "",
    defaultText: "`--tls-cert`",
    parse: PATH,
    section: "security",
    help: "PEM client certificate gateways and controllers present to workers",
  }),
  setting({
    key: "tlsClientKey",
    flag: "tls-client-key",
    metavar: "FILE",
    env: ["SMMF_TLS_CLIENT_KEY"],
    default: "",
    defaultText: "`--tls-key`",
    parse: PATH,
    section: "security",
    help: "PEM private key of `--tls-client-cert`",
  }),
  setting({
    key: "etcdCa",
    flag: "etcd-ca",
    metavar: "FILE",
    env: ["SMMF_ETCD_CA"],
    default: "",
    parse: PATH,
    section: "security",
    help: "etcd: PEM CA that etcd's server certificate chains to",
  }),
  setting({
    key: "etcdCert",
    flag: "etcd-cert",
    metavar: "FILE",
    env: ["SMMF_ETCD_CERT"],
    default: "",
    parse: PATH,
    section: "security",
    help: "etcd: PEM client certificate, for an etcd with `--client-cert-auth`",
  }),
  setting({
    key: "etcdKey",
    flag: "etcd-key",
    metavar: "FILE",
    env: ["SMMF_ETCD_KEY"],
    default: "",
    parse: PATH,
    section: "security",
    help: "etcd: PEM private key of `--etcd-cert`",
  }),
  setting({
    key: "etcdUser",
    flag: "etcd-user",
    metavar: "NAME",
    env: ["SMMF_ETCD_USER"],
    default: "",
    parse: STRING,
    section: "security",
    help: "etcd: user name, for an etcd with authentication enabled",
  }),
  setting({
    key: "etcdPasswordFile",
    flag: "etcd-password-file",
    metavar: "FILE",
    env: ["SMMF_ETCD_PASSWORD_FILE"],
    readmeEnv: "`SMMF_ETCD_PASSWORD_FILE` (or the password itself in `SMMF_ETCD_PASSWORD`)",
    default: "",
    parse: PATH,
    section: "security",
    help: "etcd: file holding the user's password; `SMMF_ETCD_PASSWORD` may hold the password itself",
  }),

  // ---- Controller -----------------------------------------------------------------------------------------
  setting({
    key: "controllerId",
    flag: "controller-id",
    metavar: "ID",
    env: ["SMMF_CONTROLLER_ID"],
    default: "",
    defaultText: "random",
    parse: STRING,
    section: "controller",
    help: "controller id",
  }),
  setting({
    key: "maxModels",
    flag: "max-models",
    env: ["SMMF_MAX_MODELS"],
    default: 1000,
    parse: integer(1, 1_000_000),
    section: "gateway",
    help: "most models in the desired state (the operating API's quota, on every node that serves it)",
  }),
  setting({
    key: "maxReplicas",
    flag: "max-replicas",
    env: ["SMMF_MAX_REPLICAS"],
    default: 256,
    parse: integer(1, 1_000_000),
    section: "gateway",
    help: "most replicas of one model (the operating API's quota, on every node that serves it)",
  }),
] as const;

type Row = (typeof SETTINGS)[number];
type ArgValue<A> = A extends "switch" ? boolean : A extends "strings" ? string[] : string;

/** Command-line flags, as parsed by the CLI: one optional property per row with a flag. */
export type ConfigFlags = { [R in Row as R["flag"] extends string ? R["flag"] : never]?: ArgValue<R["parse"]["arg"]> };

// Every SmmfConfig field has a row: this fails to compile when one is missing.
type Uncovered = Exclude<keyof SmmfConfig, Extract<Row["key"], string>>;
const everyFieldHasARow: Record<Uncovered, never> = {};
void everyFieldHasARow;

/** The built-in defaults, from the table (paths not resolved: loadConfig resolves them). */
export const DEFAULTS: SmmfConfig = Object.fromEntries(
  (SETTINGS as readonly Setting[]).filter((row) => row.key !== null).map((row) => [row.key, row.default]),
) as unknown as SmmfConfig;

/** The config-file key of a row, if it has one. */
export function fileKeyOf(row: Setting): string | null {
  return row.key !== null && row.file !== false ? row.key : null;
}
