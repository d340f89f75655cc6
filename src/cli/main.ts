import { parseArgs } from "node:util";
import { loadConfig } from "../config/loadConfig.js";
import { SmmfError } from "../errors/SmmfError.js";
import { createLogger } from "../telemetry/createLogger.js";

const USAGE = `Usage: smmf <command> [flags]

Commands:
  serve        Gateway, in-memory registry and one worker in one process (the embedded mode)
  worker       A worker: hosts models and registers them in etcd (--etcd)
  gateway      A gateway: REST and gRPC, load-balancing over the instances in etcd (--etcd)
  controller   A controller: the desired state of models in etcd, kept by the leader among the
               controllers (--etcd)
  chat MODEL   Chat with a model through a gateway, streaming (smmf chat --help)
  help         Show this help

Operating (through a gateway or controller, --url; each has --help and --json):
  model list|start|stop|restart|scale|update     the desired state of models
  instance list|online|offline|drain             model instances
  worker list                                    workers: memory, instances, labels
  events                                         what happens, as it happens
  requests list|show|tail|feedback               a gateway's request log
  audit                                          who changed what, when, and how it ended
  key create|list|revoke|rotate|usage            API keys (through a server; --bootstrap: the first key, in the store)

Commands that call a server send the API key of --api-key KEY, else of SMMF_API_KEY.

Each flag can also be set in smmf.config.json or by an SMMF_* environment variable; flags win.

Common:
  --config FILE          config file (default ./smmf.config.json when present; env SMMF_CONFIG)
  --log-level LEVEL      debug, info, warn, error or silent (default info; env SMMF_LOG_LEVEL)
  --etcd URLS            etcd endpoints, comma-separated (worker, gateway, controller; env SMMF_ETCD)
  --shutdown-grace-ms N  on SIGTERM, how long requests in flight may take to finish (default 10000)

Gateway and controller (and serve):
  --host HOST            listen host (default 127.0.0.1; env SMMF_HOST)
  --port PORT            listen port (default 8000; env SMMF_PORT)
  --max-body-bytes N     largest request body (default 1048576; env SMMF_MAX_BODY_BYTES)
  --policy NAME          load balancing: p2c (default), round-robin or weighted (env SMMF_POLICY)
  --model-policy M=NAME  load balancing for one model; repeatable
  --max-attempts N       tries per request, the first included (default 3; env SMMF_MAX_ATTEMPTS)
  --queue-size N         requests of a model that may wait when all its instances are full (default 256)
  --queue-timeout-ms N   longest wait for a free instance before 503 (default 30000)

Worker (and serve):
  --worker-host HOST     gRPC host (default 127.0.0.1; env SMMF_WORKER_HOST)
  --worker-port PORT     gRPC port, 0 = any free port (default 0; env SMMF_WORKER_PORT)
  --advertise URL        address gateways reach this worker at (default http://worker-host:port)
  --worker-id ID         worker id (default: a random one; env SMMF_WORKER_ID)
  --lease-ttl SECONDS    TTL of the worker's etcd lease (default 3; env SMMF_LEASE_TTL)
  --model-dir DIR        folder with GGUF files (default ./models; env SMMF_MODEL_DIR)
  --model NAME=PATH      serve a GGUF file under NAME; repeatable (default stories260K=stories260K.gguf; env SMMF_MODELS)
  --proxy NAME=PRESET[@URL]  serve NAME from an OpenAI-compatible upstream: openai, azure, vllm, tgi,
                         llama-server, ollama or openai-compatible; repeatable (env SMMF_PROXIES);
                         more settings (API key variable, timeouts, ...) in the config file's "models"
  --threads N            CPU threads per instance, 0 = from the cores (env SMMF_THREADS)
  --sequences N          concurrent generations per instance (default 4; env SMMF_SEQUENCES)
  --context-size N       context tokens per sequence, 0 = the model's, at most 4096 (env SMMF_CONTEXT_SIZE)
  --gpu auto|off         use a GPU when one is usable (default auto; env SMMF_GPU)
  --stream-interval-ms N tokens made within N ms of the last streamed message go out together (default 20)
  --no-models            load no configured models; host only what the controller places (env SMMF_NO_MODELS=1)
  --label KEY=VALUE      a label placement can ask for; repeatable (env SMMF_LABELS=k=v,k2=v2)
  --max-memory-mb N      memory offered to model instances, 0 = the machine's (env SMMF_MAX_MEMORY_MB)
  Model sources a worker accepts (the operator's, never a caller's, choice):
  --source-dir DIR       a folder (or file) besides --model-dir that local sources may lie in; repeatable
                         (env SMMF_SOURCE_DIRS=a,b)
  --source-host HOST     a host http(s) sources may come from: a name, an IP or *.suffix; repeatable (env
                         SMMF_SOURCE_HOSTS); none by default, so http(s) sources are refused
  --source-allow-private on|off  let downloads reach loopback, private and link-local addresses (default off)
  --max-download-mb N    largest model download (default 20480)   --download-timeout-ms N  (default 1800000)

Observability:
  --observability on|off metrics per request, traces and the request log (default on; env SMMF_OBSERVABILITY)
  --otlp-endpoint URL    send traces to an OTLP/HTTP collector, e.g. http://127.0.0.1:4318
                         (env SMMF_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT)
  --request-log on|off   gateway: keep the request log (default on; env SMMF_REQUEST_LOG)
  --request-log-capture full|truncated|off  prompts and outputs kept (default truncated: 2000 characters)
  --request-log-retention-days N  (default 7)     --request-log-max-rows N  (default 100000)
  --data-dir DIR         the request log's folder (default ./data; env SMMF_DATA_DIR)

Security (gateway, controller and serve):
  --auth auto|on|off     API keys: auto (default) checks them once a key exists, and always when listening
                         beyond loopback (such a server with no key refuses to start); off: no checks, warned
                         at every start (env SMMF_AUTH). Keys: smmf key --help
  --cluster-secret-file F  the cluster credential: a secret (16+ characters) every SMMF process of a cluster
                         shares; workers answer only callers that present it (env SMMF_CLUSTER_SECRET holds
                         the secret itself; SMMF_CLUSTER_SECRET_FILE the file). A worker listening beyond
                         loopback without one refuses to start; smmf serve makes its own.
  --cors-origin ORIGIN   a web origin (https://app.example.com, or *) allowed to call the API from a
                         browser; repeatable (env SMMF_CORS_ORIGINS=a,b). None by default: no CORS.

Controller:
  --controller-id ID     controller id (default: a random one; env SMMF_CONTROLLER_ID)
  --lease-ttl SECONDS    a dead leader is replaced within about this long (default 3)
`;

const FLAG_OPTIONS = {
  config: { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  "worker-host": { type: "string" },
  "worker-port": { type: "string" },
  "model-dir": { type: "string" },
  model: { type: "string", multiple: true },
  threads: { type: "string" },
  sequences: { type: "string" },
  "context-size": { type: "string" },
  gpu: { type: "string" },
  "max-body-bytes": { type: "string" },
  "stream-interval-ms": { type: "string" },
  "log-level": { type: "string" },
  etcd: { type: "string" },
  "lease-ttl": { type: "string" },
  "worker-id": { type: "string" },
  advertise: { type: "string" },
  policy: { type: "string" },
  "model-policy": { type: "string", multiple: true },
  "max-attempts": { type: "string" },
  "queue-size": { type: "string" },
  "queue-timeout-ms": { type: "string" },
  "shutdown-grace-ms": { type: "string" },
  "no-models": { type: "boolean" },
  label: { type: "string", multiple: true },
  "max-memory-mb": { type: "string" },
  "source-dir": { type: "string", multiple: true },
  "source-host": { type: "string", multiple: true },
  "source-allow-private": { type: "string" },
  "max-download-mb": { type: "string" },
  "download-timeout-ms": { type: "string" },
  "controller-id": { type: "string" },
  proxy: { type: "string", multiple: true },
  observability: { type: "string" },
  "otlp-endpoint": { type: "string" },
  "request-log": { type: "string" },
  "request-log-capture": { type: "string" },
  "request-log-retention-days": { type: "string" },
  "request-log-max-rows": { type: "string" },
  "data-dir": { type: "string" },
  auth: { type: "string" },
  "cluster-secret-file": { type: "string" },
  "cors-origin": { type: "string", multiple: true },
  help: { type: "boolean", short: "h" },
} as const;

// Each command's module is imported only when it runs: a short admin command starts fast.
const COMMANDS = {
  serve: async () => (await import("./runServe.js")).runServe,
  worker: async () => (await import("./runWorker.js")).runWorker,
  gateway: async () => (await import("./runGateway.js")).runGateway,
  controller: async () => (await import("./runController.js")).runController,
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  if (command === "chat") return (await import("./runChat.js")).runChat(rest);
  if (command === "model") return (await import("./runModelCommand.js")).runModelCommand(rest);
  if (command === "instance") return (await import("./runInstanceCommand.js")).runInstanceCommand(rest);
  if (command === "events") return (await import("./runEvents.js")).runEvents(rest);
  if (command === "key") return (await import("./runKeyCommand.js")).runKeyCommand(rest);
  if (command === "requests") return (await import("./runRequestsCommand.js")).runRequestsCommand(rest);
  if (command === "audit") return (await import("./runAuditCommand.js")).runAuditCommand(rest);
  if (command === "worker" && rest[0] === "list") return (await import("./runWorkerList.js")).runWorkerList(rest.slice(1));
  if (!Object.hasOwn(COMMANDS, command)) {
    process.stderr.write(`smmf: unknown command '${command}'\n\n${USAGE}`);
    return 2;
  }
  let values;
  try {
    ({ values } = parseArgs({ args: rest, options: FLAG_OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    process.stderr.write(`smmf: ${(err as Error).message}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    const config = loadConfig(values);
    const logger = createLogger(config.logLevel, `smmf-${command}`);
    const run = await COMMANDS[command as keyof typeof COMMANDS]();
    return await run(config, logger);
  } catch (err) {
    if (err instanceof SmmfError && err.code !== "internal") {
      process.stderr.write(`smmf: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`smmf: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
