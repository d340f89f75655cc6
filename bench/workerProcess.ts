// A worker in its own process for the benchmark: loads the model, prints "PORT <n>", serves until killed.
import { dirname } from "node:path";
import { create } from "@bufbuild/protobuf";
import { InstanceSpecSchema } from "../src/gen/smmf/v1/instance_pb.js";
import { createLogger } from "../src/telemetry/createLogger.js";
import { startWorker } from "../src/worker/startWorker.js";

const [modelPath, sequences, threads, streamIntervalMs] = process.argv.slice(2);
const running = await startWorker({ host: "127.0.0.1", port: 0, logger: createLogger("warn"), engineDefaults: { gpu: false }, modelDir: dirname(modelPath), streamIntervalMs: Number(streamIntervalMs) });
await running.worker.load(
  create(InstanceSpecSchema, {
    model: "stories260K",
    engine: "llama.cpp",
    source: modelPath,
    llamaCpp: { sequences: Number(sequences), threads: Number(threads), embeddings: false },
  }),
);
process.stdout.write(`PORT ${running.port}\n`);
process.on("SIGTERM", () => running.close().then(() => process.exit(0)));
