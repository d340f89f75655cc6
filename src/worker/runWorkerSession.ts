import { create } from "@bufbuild/protobuf";
import { CommandResultSchema, SessionResponseSchema, type SessionRequest, type SessionResponse } from "../gen/smmf/v1/worker_pb.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";
import { createAsyncQueue } from "../util/createAsyncQueue.js";
import type { Worker } from "./Worker.js";
import { EtcdRegistry } from "../registry/EtcdRegistry.js";
import { ELECTION_KEY } from "../registry/instanceKey.js";
import { withTimeout } from "../registry/withTimeout.js";

const ELECTION_READ_TIMEOUT_MS = 3_000;

/**
 * A session's term must be the one etcd's election holds now (the election key's create revision): a caller
 * cannot claim a huge term and depose the real leader for good. Workers without etcd (the embedded mode) hear
 * only from their own process's controller, through the cluster credential.
 */
async function checkElected(worker: Worker, term: bigint): Promise<void> {
  const registry = worker.registry;
  if (!(registry instanceof EtcdRegistry)) return;
  let elected: bigint | undefined;
  try {
    const res = await withTimeout(registry.client.get(ELECTION_KEY).exec(), ELECTION_READ_TIMEOUT_MS);
    const kv = res.kvs[0];
    elected = kv ? BigInt(kv.create_revision) : undefined;
  } catch (err) {
    throw new SmmfError("unavailable", `cannot check controller term ${term} against the election in etcd: ${(err as Error).message}`);
  }
  if (elected !== term) throw new SmmfError("failed_precondition", `controller term ${term} is not the elected one (the election in etcd is ${elected === undefined ? "vacant" : `of term ${elected}`})`);
}

export const DEFAULT_STATUS_INTERVAL_MS = 2_000;

/**
 * One controller session on a worker. The first request must be `open`; a term lower than one this worker
 * has seen is refused, and a session of a newer term ends every older one. The worker sends its status at
 * once, after every change of its instances and every `statusIntervalMs`; each command gets its result when
 * done (commands run concurrently: a long load does not hold up a drain).
 */
export async function* runWorkerSession(
  worker: Worker,
  requests: AsyncIterable<SessionRequest>,
  logger: Logger,
  statusIntervalMs = DEFAULT_STATUS_INTERVAL_MS,
): AsyncGenerator<SessionResponse> {
  const iterator = requests[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done || first.value.command.case !== "open") throw new SmmfError("invalid_argument", "the first Session message must be 'open'");
  const { term, controllerId } = first.value.command.value;
  await checkElected(worker, term);
  if (term < worker.highestTerm) {
    throw new SmmfError("failed_precondition", `controller term ${term} is deposed: a controller of term ${worker.highestTerm} leads`);
  }
  worker.highestTerm = term;
  const out = createAsyncQueue<SessionResponse>();
  const session = { term, end: (why: SmmfError) => out.fail(why) };
  for (const other of worker.sessions) {
    if (other.term < term) other.end(new SmmfError("failed_precondition", `controller term ${other.term} is deposed by term ${term}`));
  }
  worker.sessions.add(session);
  logger.info("controller session opened", { controller: controllerId, term: String(term) });

  let statusQueued = false;
  const sendStatus = () => {
    statusQueued = false;
    out.push(create(SessionResponseSchema, { event: { case: "status", value: { worker: worker.info(), instances: worker.list() } } }));
  };
  const queueStatus = () => {
    if (statusQueued) return;
    statusQueued = true;
    setImmediate(sendStatus);
  };
  sendStatus();
  const unsubscribe = worker.onChange(queueStatus);
  const timer = setInterval(queueStatus, statusIntervalMs);

  const run = async (request: SessionRequest): Promise<void> => {
    const result = create(CommandResultSchema, { commandId: request.commandId, ok: true });
    try {
      if (worker.highestTerm > term) throw new SmmfError("failed_precondition", `controller term ${term} is deposed`);
      const command = request.command;
      switch (command.case) {
        case "load":
          if (!command.value.spec) throw new SmmfError("invalid_argument", "'spec' is required", { param: "spec" });
          result.instance = await worker.load(command.value.spec);
          break;
        case "unload":
          await worker.unload(command.value.instanceId, { drain: command.value.drain });
          break;
        case "setState":
          result.instance = await worker.setState(command.value.instanceId, command.value.state);
          break;
        default:
          throw new SmmfError("invalid_argument", `unexpected Session message '${command.case ?? "empty"}'`);
      }
    } catch (err) {
      const error = toSmmfError(err);
      if (error.code === "internal") logger.error("session command failed", { error: String((err as Error)?.stack ?? err) });
      result.ok = false;
      result.errorCode = error.code;
      result.errorMessage = error.message;
    }
    out.push(create(SessionResponseSchema, { event: { case: "result", value: result } }));
  };
  void (async () => {
    for (;;) {
      const next = await iterator.next();
      if (next.done) return out.end();
      void run(next.value);
    }
  })().catch(() => out.end());

  try {
    yield* out;
  } finally {
    clearInterval(timer);
    unsubscribe();
    worker.sessions.delete(session);
    logger.info("controller session closed", { controller: controllerId, term: String(term) });
  }
}
