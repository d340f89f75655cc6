import { Worker } from "node:worker_threads";
import { SmmfError } from "../errors/SmmfError.js";
import type { Logger } from "./createLogger.js";
import type { Feedback, LoggedRequest, RequestEntry, RequestQuery } from "./RequestLog.js";
import { bundleThreadSource } from "./bundleThreadSource.js";
import { ByteWriter } from "./ByteWriter.js";
import type { FinishedSpan } from "./RecordedSpan.js";
import { encodeSpan } from "./spanCodec.js";
import { ITEM_ENTRY, ITEM_SPAN, type FromThread, type RequestLogMethod, type TelemetryThreadSettings, type ToThread } from "./telemetryThreadProtocol.js";

const CLOSE_TIMEOUT_MS = 10_000;
const CALL_TIMEOUT_MS = 10_000;
/** How often what was handed over goes to the thread: waking a thread costs ~80 µs here. */
const SEND_EVERY_MS = 100;
/** Items held for the thread at most; beyond that spans are dropped and entries counted as dropped. */
const MAX_OUTBOX = 20_000;

/** The request log as the serving thread sees it: entries go in at once, reads are answered asynchronously. */
export interface RequestLogAccess {
  /** Queues an entry; returns at once, never throws. */
  record(entry: RequestEntry): void;
  get(id: string): Promise<LoggedRequest | undefined>;
  /** Newest first; `next` is the cursor of the following page, when there is one. */
  query(q: RequestQuery): Promise<{ data: LoggedRequest[]; next: string | null }>;
  /** Stores feedback on a logged request; undefined when there is no such request. */
  setFeedback(id: string, feedback: Omit<Feedback, "time">): Promise<LoggedRequest | undefined>;
}

/**
 * A worker thread that does a process's telemetry I/O: it batches finished spans and exports them over
 * OTLP/HTTP, and writes and reads the request log (SQLite). The serving thread only writes each finished span
 * (field by field) or entry (as JSON) into an off-heap buffer, a few microseconds each, and every 100 ms
 * transfers that buffer to the thread in one message, so exports, log writes and thread wake-ups never hold up
 * a request, and what is handed over makes next to no garbage on the serving thread.
 * When the thread fails, spans and entries are dropped (entries counted) and log reads answer `unavailable`.
 */
export class TelemetryThread {
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private failure?: string;
  private closed?: Promise<void>;
  private outbox = new ByteWriter();
  private outboxItems = 0;
  /** How many of the outbox's items are request-log entries (counted as dropped if the thread fails). */
  private outboxEntries = 0;
  private readonly sender: NodeJS.Timeout;

  /** Starts the thread; one that cannot start is returned failed (it drops what it is given, and says why). */
  static async start(settings: TelemetryThreadSettings, logger: Logger, onDropped: (count: number) => void = () => undefined): Promise<TelemetryThread> {
    try {
      return new TelemetryThread(new Worker(await bundleThreadSource(), { workerData: settings, name: "smmf-telemetry" }), logger, onDropped);
    } catch (err) {
      return new TelemetryThread(undefined, logger, onDropped, `the telemetry thread could not start: ${(err as Error).message}`);
    }
  }

  private constructor(
    private readonly thread: Worker | undefined,
    private readonly logger: Logger,
    private readonly onDropped: (count: number) => void,
    failure?: string,
  ) {
    this.sender = setInterval(() => this.send(), SEND_EVERY_MS);
    this.sender.unref();
    if (!thread) {
      this.fail(failure ?? "no telemetry thread");
      return;
    }
    thread.unref();
    thread.on("message", (m: FromThread) => this.receive(m));
    thread.on("error", (err) => this.fail(`the telemetry thread failed: ${err.message}`));
    thread.on("exit", () => this.fail("the telemetry thread has stopped"));
  }

  /** Where finished spans go (`Tracing`'s sink): to the thread, which exports them. */
  spanSink(): (span: FinishedSpan) => void {
    return (span) => {
      if (!this.canTake()) return;
      this.outbox.u8(ITEM_SPAN);
      encodeSpan(this.outbox, span);
      this.outboxItems++;
    };
  }

  /** The request log kept by the thread (when it was started with one). */
  requestLog(): RequestLogAccess {
    return {
      record: (entry) => {
        if (!this.canTake()) return this.onDropped(1);
        this.outbox.u8(ITEM_ENTRY);
        this.outbox.string(JSON.stringify(entry));
        this.outboxItems++;
        this.outboxEntries++;
      },
      get: (id) => this.call("get", id) as Promise<LoggedRequest | undefined>,
      query: (q) => this.call("query", q) as Promise<{ data: LoggedRequest[]; next: string | null }>,
      setFeedback: (id, feedback) => this.call("setFeedback", id, feedback) as Promise<LoggedRequest | undefined>,
    };
  }

  /** Writes what the log holds, exports the spans left (a collector that is gone loses them), and stops. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      const thread = this.thread;
      if (this.failure !== undefined || !thread) return resolve();
      const timer = setTimeout(() => void thread.terminate().then(() => resolve()), CLOSE_TIMEOUT_MS);
      thread.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      thread.ref();
      clearInterval(this.sender);
      this.post({ type: "close" });
    });
    return this.closed;
  }

  private call(method: RequestLogMethod, ...args: unknown[]): Promise<unknown> {
    if (this.failure !== undefined) return Promise.reject(new SmmfError("unavailable", `the request log is not available (${this.failure})`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      // A thread that does not answer (e.g. stuck on a locked database file) fails the call, not hangs it.
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SmmfError("unavailable", `the request log did not answer within ${CALL_TIMEOUT_MS / 1000} s`));
      }, CALL_TIMEOUT_MS);
      const done = () => clearTimeout(timer);
      this.pending.set(id, { resolve: (v) => (done(), resolve(v)), reject: (e) => (done(), reject(e)) });
      this.post({ type: "call", id, method, args });
    });
  }

  /** Whether another item can be queued for the next send. */
  private canTake(): boolean {
    return this.failure === undefined && this.outboxItems < MAX_OUTBOX;
  }

  private send(): void {
    if (this.outboxItems === 0) return;
    const { buffer, length } = this.outbox.take();
    this.outboxItems = 0;
    this.outboxEntries = 0;
    this.thread?.postMessage({ type: "items", buffer, length } satisfies ToThread, [buffer]);
  }

  /** Sends a message after everything handed over before it. */
  private post(m: ToThread): void {
    this.send();
    this.thread?.postMessage(m);
  }

  private receive(m: FromThread): void {
    if (m.type === "reply") {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(new SmmfError(m.error.code, m.error.message, { param: m.error.param }));
      else p?.resolve(m.result);
    } else if (m.type === "dropped") {
      this.onDropped(m.count);
    } else if (m.type === "warn") {
      this.logger.warn(m.message);
    } else if (m.type === "closed") {
      void this.thread?.terminate();
    }
  }

  private fail(why: string): void {
    if (this.failure !== undefined) return;
    this.failure = why;
    clearInterval(this.sender);
    if (this.outboxEntries > 0) this.onDropped(this.outboxEntries);
    this.outbox = new ByteWriter();
    this.outboxItems = 0;
    this.outboxEntries = 0;
    if (this.closed === undefined) this.logger.warn(why);
    for (const p of this.pending.values()) p.reject(new SmmfError("unavailable", `the request log is not available (${why})`));
    this.pending.clear();
  }
}
