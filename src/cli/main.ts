import { parseArgs } from "node:util";
import { SmmfError } from "../errors/SmmfError.js";
import { runServe } from "./runServe.js";

const USAGE = `Usage: smmf <command> [flags]

Commands:
  serve     Run gateway, registry and one worker in one process (the embedded mode)
  help      Show this help

Flags for serve (each also settable in smmf.config.json or by an SMMF_* environment variable):
  --config FILE          config file (default ./smmf.config.json when present; env SMMF_CONFIG)
  --host HOST            gateway host (default 127.0.0.1; env SMMF_HOST)
  --port PORT            gateway port (default 8000; env SMMF_PORT)
  --worker-host HOST     worker gRPC host (default 127.0.0.1; env SMMF_WORKER_HOST)
  --worker-port PORT     worker gRPC port, 0 = any free port (default 0; env SMMF_WORKER_PORT)
  --model-dir DIR        folder with GGUF files (default ./models; env SMMF_MODEL_DIR)
  --model NAME=PATH      serve a GGUF file under NAME; repeatable (default stories260K=stories260K.gguf; env SMMF_MODELS)
  --threads N            CPU threads per instance, 0 = from the cores (env SMMF_THREADS)
  --sequences N          concurrent generations per instance (default 4; env SMMF_SEQUENCES)
  --context-size N       context tokens per sequence, 0 = the model's, at most 4096 (env SMMF_CONTEXT_SIZE)
  --gpu auto|off         use a GPU when one is usable (default auto; env SMMF_GPU)
  --max-body-bytes N     largest request body (default 1048576; env SMMF_MAX_BODY_BYTES)
  --stream-interval-ms N tokens made within N ms of the last streamed message go out together (default 20; env SMMF_STREAM_INTERVAL_MS)
  --log-level LEVEL      debug, info, warn, error or silent (default info; env SMMF_LOG_LEVEL)
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
  help: { type: "boolean", short: "h" },
} as const;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  if (command !== "serve") {
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
    return await runServe(values);
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
