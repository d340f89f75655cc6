import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { SessionRequestSchema, type CommandResult, type SessionRequest, type WorkerStatus } from "../gen/smmf/v1/worker_pb.js";
import type { WorkerInfo } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";
import { createAsyncQueue, type AsyncQueue } from "../util/createAsyncQueue.js";
import type { WorkerServiceClients } from "./WorkerServiceClients.js";

type Command = NonNullable<MessageInitShape<typeof SessionRequestSchema>["command"]>;

interface Link {
  workerId: string;
  address: string;
  abort: AbortController;
  requests?: AsyncQueue<SessionRequest>;
  status?: WorkerStatus;
  /** Statuses received on this link, over all its sessions: a later status has a higher number. */
  statusSeq: number;
  pending: Map<bigint, { resolve(result: CommandResult): void; reject(err: unknown): void }>;
}

export interface SendOptions {
  /** The longest to wait for the command's result; then it rejects with deadline_exceeded (the worker may still carry it out). */
  timeoutMs?: number;
}

export interface WorkerSessionsOptions {
  controllerId: string;
  term: bigint;
  clients: WorkerServiceClients;
  logger: Logger;
  /** Called whenever a worker's status arrives or a session ends. */
  onChange(): void;
  /** A session silent for this long is opened again (ms); default SESSION_SILENCE_MS. */
  silenceMs?: number;
}

const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 2_000;
/**
 * A session on which nothing arrives for this long is given up and opened again: a worker sends its status
 * at least every 2 s, so silence means a stalled connection or worker (the first status also waits for the
 * worker's term check in etcd, up to 3 s).
 */
export const SESSION_SILENCE_MS = 15_000;

/**
 * The leader's sessions with the workers: one bidirectional Session stream per worker in the registry,
 * opened with the leader's term and re-opened (with backoff) while the worker is listed. Holds each
 * worker's latest status and sends commands, resolving with their results.
 */
export class WorkerSessions {
  private readonly options: WorkerSessionsOptions;
  private readonly links = new Map<string, Link>();
  private nextCommandId = 1n;
  private closed = false;

  private readonly silenceMs: number;

  constructor(options: WorkerSessionsOptions) {
    this.options = options;
    this.silenceMs = options.silenceMs ?? SESSION_SILENCE_MS;
  }

  /** Opens sessions to workers that are new, closes those of workers that are gone (or moved). */
  sync(workers: readonly WorkerInfo[]): void {
    if (this.closed) return;
    const wanted = new Map(workers.filter((w) => w.address).map((w) => [w.workerId, w]));
    for (const [id, link] of this.links) {
      if (wanted.get(id)?.address !== link.address) this.drop(link);
    }
    for (const worker of wanted.values()) {
      if (this.links.has(worker.workerId)) continue;
      const link: Link = { workerId: worker.workerId, address: worker.address, abort: new AbortController(), statusSeq: 0, pending: new Map() };
      this.links.set(worker.workerId, link);
      void this.run(link);
    }
  }

  /** Latest status of every worker with an open session. */
  statuses(): WorkerStatus[] {
    const out: WorkerStatus[] = [];
    for (const link of this.links.values()) if (link.status && link.requests) out.push(link.status);
    return out;
  }

  /**
   * How many statuses have come from the worker so far, while its session is open (undefined without one).
   * A status numbered higher than the count at some moment was sent after that moment's results.
   */
  statusSeq(workerId: string): number | undefined {
    const link = this.links.get(workerId);
    return link?.requests && link.status ? link.statusSeq : undefined;
  }

  /**
   * Sends a command to a worker; resolves with its result, rejects (unavailable) when there is no session or
   * it breaks, and (deadline_exceeded) when `timeoutMs` passes first.
   */
  send(workerId: string, command: Command, options: SendOptions = {}): Promise<CommandResult> {
    const link = this.links.get(workerId);
    if (!link?.requests || !link.status) return Promise.reject(new SmmfError("unavailable", `no session with worker ${workerId}`));
    const commandId = this.nextCommandId++;
    return new Promise<CommandResult>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const settle = () => {
        clearTimeout(timer);
        link.pending.delete(commandId);
      };
      link.pending.set(commandId, {
        resolve: (result) => {
          settle();
          resolve(result);
        },
        reject: (err) => {
          settle();
          reject(err);
        },
      });
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          settle();
          reject(new SmmfError("deadline_exceeded", `worker ${workerId} did not answer the '${command.case}' command within ${options.timeoutMs} ms`));
        }, options.timeoutMs);
      }
      link.requests!.push(create(SessionRequestSchema, { commandId, command }));
    });
  }

  private async run(link: Link): Promise<void> {
    const { clients, controllerId, term, logger } = this.options;
    let delay = RETRY_MIN_MS;
    while (!this.closed && !link.abort.signal.aborted) {
      const requests = createAsyncQueue<SessionRequest>();
      requests.push(create(SessionRequestSchema, { command: { case: "open", value: { controllerId, term } } }));
      // This session's own abort: the link's, or silence from the worker for too long.
      const attempt = new AbortController();
      const onLinkAbort = () => attempt.abort();
      link.abort.signal.addEventListener("abort", onLinkAbort, { once: true });
      let silence: NodeJS.Timeout | undefined;
      const heard = () => {
        clearTimeout(silence);
        silence = setTimeout(() => attempt.abort(new SmmfError("deadline_exceeded", `no word from worker ${link.workerId} for ${this.silenceMs} ms`)), this.silenceMs);
      };
      heard();
      try {
        const responses = clients.get(link.address).session(requests, { signal: attempt.signal });
        for await (const response of responses) {
          heard();
          if (response.event.case === "status") {
            if (!link.requests) logger.info("worker session open", { worker: link.workerId });
            link.requests = requests;
            link.status = response.event.value;
            link.statusSeq++;
            delay = RETRY_MIN_MS;
            this.options.onChange();
          } else if (response.event.case === "result") {
            const result = response.event.value;
            link.pending.get(result.commandId)?.resolve(result);
          }
        }
      } catch (err) {
        if (!link.abort.signal.aborted) logger.debug("worker session broke", { worker: link.workerId, error: toSmmfError(attempt.signal.reason ?? err).message });
      } finally {
        clearTimeout(silence);
        link.abort.signal.removeEventListener("abort", onLinkAbort);
      }
      if (attempt.signal.aborted && !link.abort.signal.aborted) logger.warn("worker session silent: opening it again", { worker: link.workerId });
      requests.end();
      this.endLink(link, "the session with the worker ended");
      if (this.closed || link.abort.signal.aborted) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(RETRY_MAX_MS, delay * 2);
    }
  }

  private endLink(link: Link, why: string): void {
    const had = link.requests !== undefined;
    link.requests = undefined;
    link.status = undefined;
    for (const { reject } of [...link.pending.values()]) reject(new SmmfError("unavailable", `${why} (worker ${link.workerId})`));
    link.pending.clear();
    if (had) {
      this.options.logger.info("worker session closed", { worker: link.workerId });
      this.options.onChange();
    }
  }

  private drop(link: Link): void {
    this.links.delete(link.workerId);
    link.abort.abort();
    this.endLink(link, "the worker left");
  }

  close(): void {
    this.closed = true;
    for (const link of [...this.links.values()]) this.drop(link);
  }
}
