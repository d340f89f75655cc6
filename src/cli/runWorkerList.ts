import { parseCommandArgs } from "./parseCommandArgs.js";
import { toJson } from "@bufbuild/protobuf";
import { WorkerStatusSchema } from "../gen/smmf/v1/worker_pb.js";
import { adminClient, EXIT, EXIT_CODES_HELP, reportError } from "./adminClient.js";
import { formatTable } from "./formatTable.js";

export const WORKER_LIST_USAGE = `Usage: smmf worker list [flags]

Every registered worker: address, memory free of total, hosted instances, requests in flight, labels.
(\`smmf worker\` without 'list' runs a worker: see smmf --help.)

Flags:
  --url URL       a gateway or controller (default http://127.0.0.1:8000; env SMMF_URL)
  --json          print JSON (protobuf JSON of the records) instead of text

${EXIT_CODES_HELP}
`;

const mib = (bytes: bigint) => `${(bytes / 1048576n).toString()}`;

/** `smmf worker list`. */
export async function runWorkerList(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("worker list", WORKER_LIST_USAGE, args, { url: { type: "string" }, json: { type: "boolean" } });
  if (typeof parsed === "number") return parsed;
  if (parsed.positionals.length > 0) {
    process.stderr.write(`smmf worker list: unexpected argument '${parsed.positionals[0]}'\n\n${WORKER_LIST_USAGE}`);
    return EXIT.usage;
  }
  try {
    const { workers } = await adminClient(parsed.values.url).listWorkers({});
    if (parsed.values.json) {
      process.stdout.write(`${JSON.stringify(workers.map((w) => toJson(WorkerStatusSchema, w)))}\n`);
      return EXIT.ok;
    }
    const rows = workers.map(({ worker, instances }) => [
      worker!.workerId,
      worker!.address,
      `${mib(worker!.memoryFreeBytes)}/${mib(worker!.memoryTotalBytes)} MiB`,
      instances.map((i) => i.instanceId).join(",") || "-",
      String(worker!.inFlight),
      Object.entries(worker!.labels).map(([k, v]) => `${k}=${v}`).join(",") || "-",
    ]);
    process.stdout.write(formatTable(["WORKER", "ADDRESS", "MEMORY_FREE", "INSTANCES", "IN_FLIGHT", "LABELS"], rows));
    return EXIT.ok;
  } catch (err) {
    return reportError("worker list", err);
  }
}
