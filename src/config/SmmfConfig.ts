import type { LogLevel } from "../telemetry/createLogger.js";
import type { UpstreamCredential } from "../engines/UpstreamCredential.js";

/** One model the embedded worker (or `smmf worker`) loads at start. */
export interface ModelConfig {
  /** Name clients ask for. */
  name: string;
  /**
   * "llama.cpp" (node-llama-cpp in the worker's process), "llama.cpp-server" (llama.cpp's own server as a child
   * process), or an OpenAI-compatible upstream preset: openai, azure, vllm, tgi, llama-server, ollama,
   * openai-compatible. Unset: the `engine` setting.
   */
  engine?: string;
  /** llama.cpp: the GGUF file; a relative path is looked up in `modelDir`. */
  file: string;
  /** Upstream engines: API root (default: the preset's). */
  baseUrl?: string;
  /** Upstream engines: the model's name upstream (default: `name`). */
  upstreamModel?: string;
  /** Upstream engines: environment variable holding the API key (default: the preset's). */
  apiKeyEnv?: string;
  /** Upstream engines: file holding the API key. */
  apiKeyFile?: string;
  /** Upstream engines: the name of one of `upstreamCredentials`, whose key is sent (instead of apiKeyEnv / apiKeyFile). */
  credential?: string;
  /** Upstream engines: extra request headers (not credentials). */
  headers?: Record<string, string>;
  connectTimeoutMs?: number;
  readTimeoutMs?: number;
  /** Upstream engines: requests sent upstream at once (default 16). */
  maxConcurrency?: number;
  /** Upstream engines: most pooled keep-alive connections open at once (default: maxConcurrency). */
  poolSize?: number;
  /** Upstream engines: how long an idle pooled connection is kept, in ms (default 30000). */
  idleTimeoutMs?: number;
  /** Upstream engines: reuse connections between requests (default true). */
  keepAlive?: boolean;
  /** Azure: api-version. */
  apiVersion?: string;
  contextSize?: number;
  sequences?: number;
  threads?: number;
  gpuLayers?: number;
  embeddings?: boolean;
  chatTemplate?: "auto" | "fallback";
  /** llama.cpp: reuse cached prompt prefixes between requests (default true). */
  prefixCache?: boolean;
  /** Relative weight for weighted load balancing. */
  weight?: number;
}

export interface SmmfConfig {
  /** Gateway address. */
  host: string;
  port: number;
  /** Worker gRPC address; port 0 picks a free port. */
  workerHost: string;
  workerPort: number;
  modelDir: string;
  models: ModelConfig[];
  /** The engine of models that name a file and no engine: "llama.cpp" or "llama.cpp-server". */
  engine: "llama.cpp" | "llama.cpp-server";
  /** Default CPU threads per llama.cpp instance; 0 = from the machine's cores. */
  threads: number;
  /** Default concurrent generations per instance. */
  sequences: number;
  /** Default context size per sequence; 0 = the model's training context, at most 4096. */
  contextSize: number;
  gpu: "auto" | "off";
  maxBodyBytes: number;
  /** Tokens produced within this many milliseconds of the last streamed message are sent together; 0 sends each at once. */
  streamIntervalMs: number;
  logLevel: LogLevel;
  /** How long a stopping server waits for requests in flight (a worker drains for at most this long). */
  shutdownGraceMs: number;
  /** etcd endpoints, comma-separated, for the distributed mode (worker, gateway, controller). */
  etcd: string;
  /** TTL of a worker's etcd lease, in seconds. */
  leaseTtlSeconds: number;
  /** Worker id; empty picks one. */
  workerId: string;
  /** Address gateways reach this worker at; empty = http://workerHost:workerPort. */
  advertiseAddress: string;
  /** Gateway: default load-balancing policy, and policies per model. */
  policy: "prefix" | "p2c" | "round-robin" | "weighted";
  modelPolicies: Record<string, "prefix" | "p2c" | "round-robin" | "weighted">;
  /** Gateway: tries per request, the first included. */
  maxAttempts: number;
  /** Gateway: requests of one model that may wait when all its instances are full; more get 429. */
  queueSize: number;
  /** Gateway: longest wait for a free instance before 503. */
  queueTimeoutMs: number;
  /** "off": no metrics per request, no traces, no request log (process metrics stay). */
  observability: "on" | "off";
  /** OTLP/HTTP collector endpoint for traces (e.g. http://127.0.0.1:4318); empty: no traces. */
  otlpEndpoint: string;
  /** Gateway: keep a request log. */
  requestLog: "on" | "off";
  /** How much of prompts and outputs the request log keeps. */
  requestLogCapture: "full" | "truncated" | "off";
  requestLogRetentionDays: number;
  requestLogMaxRows: number;
  /** Folder for SMMF's own files (the request log's SQLite database). */
  dataDir: string;
  /**
   * API keys: "auto" (default) checks them once any key exists, and refuses to start a gateway or controller
   * listening beyond loopback without one; "on" always; "off" never (warned at every start).
   */
  auth: "auto" | "on" | "off";
  /** File holding the cluster credential (the secret every SMMF process shares); SMMF_CLUSTER_SECRET wins. */
  clusterSecretFile: string;
  /** Gateway: web origins allowed to call the API from a browser (CORS); none by default. */
  corsOrigins: string[];
  /** Controller id; empty picks one. */
  controllerId: string;
  /** Worker: labels the controller's placement matches (`--label key=value`). */
  labels: Record<string, string>;
  /** Worker: memory offered to model instances, in MiB; 0 = the machine's. */
  maxMemoryMb: number;
  /** PEM certificate (chain) this process's listener serves (HTTPS and h2 on gateway and controller; workers too). Empty: cleartext. */
  tlsCert: string;
  /** PEM private key of tlsCert. */
  tlsKey: string;
  /** PEM CA bundle for the cluster's mTLS: workers require client certificates from it; gateways and controllers verify workers with it. */
  tlsCa: string;
  /** PEM client certificate gateways and controllers present to workers (default: tlsCert). */
  tlsClientCert: string;
  /** PEM private key of tlsClientCert (default: tlsKey). */
  tlsClientKey: string;
  /** etcd: PEM CA that etcd's server certificate chains to. */
  etcdCa: string;
  /** etcd: PEM client certificate (etcd --client-cert-auth). */
  etcdCert: string;
  /** etcd: PEM private key of etcdCert. */
  etcdKey: string;
  /** etcd: user name (etcd auth enabled). */
  etcdUser: string;
  /** etcd: file holding etcdUser's password (SMMF_ETCD_PASSWORD holds the password itself). */
  etcdPasswordFile: string;
  /** Longest wait for a request's headers, in ms. */
  headersTimeoutMs: number;
  /** Longest wait for a whole request (headers and body; not the answer), in ms. */
  requestTimeoutMs: number;
  /** A connection with no traffic (no request in flight) is closed after this long, in ms. */
  idleSocketTimeoutMs: number;
  /** Most open connections per listener; more are closed at once. */
  maxConnections: number;
  /** Most concurrent streams on one HTTP/2 connection. */
  maxStreams: number;
  /** Gateway: most messages in one chat request. */
  maxMessages: number;
  /** Gateway: most characters of prompt (all messages or the prompt together), checked before tokenizing. */
  maxPromptChars: number;
  /** Gateway: longest stop string, in characters (at most 4 stop strings, as OpenAI). */
  maxStopChars: number;
  /** Controller: most models in the desired state. */
  maxModels: number;
  /** Controller: most replicas of one model. */
  maxReplicas: number;
  /** Worker: most model instances hosted at once. */
  maxInstancesPerWorker: number;
  /** Worker: bytes of downloaded model files kept, in MiB; unused files are evicted oldest-used first. */
  downloadCacheMb: number;
  /** Gateway: the request log's largest size on disk, in MiB; oldest rows go first. */
  requestLogMaxMb: number;
  /** Worker: folders (beside modelDir) that local model sources may lie in; default none. */
  sourceDirs?: string[];
  /** Worker: hosts http(s) model sources may be downloaded from (exact names, IP literals or `*.suffix`); default none. */
  sourceHosts?: string[];
  /** Worker: let downloads reach loopback, private and link-local addresses (metadata ones only when listed exactly); default false. */
  sourceAllowPrivate?: boolean;
  /** Worker: largest model download, in MiB; default 20480 (20 GiB). */
  maxDownloadMb?: number;
  /** Worker: longest model download, in ms; default 1800000 (30 minutes). */
  downloadTimeoutMs?: number;
  /**
   * Worker: named upstream API keys (config file only): where each key is read (`env` or `file`) and the base
   * URLs it may be sent to. Model specs, the API's included, name them in `credential`.
   */
  upstreamCredentials?: UpstreamCredential[];
}
