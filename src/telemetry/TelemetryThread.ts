import { EventEmitter } from "node:events";
import { Worker } from "node:worker_threads";
import { SmmfError } from "../errors/SmmfError.js";
import type { Logger } from "./createLogger.js";
import type { Feedback, LoggedRequest, RequestEntry, RequestQuery } from "./RequestLog.js";
import { bundleThreadSource } from "./bundleThreadSource.js";
import { ByteWriter } from "./ByteWriter.js";
import type { FinishedSpan } from "./RecordedSpan.js";
import { encodeSpan } from "./spanCodec.js";
import { entryJson, writeItem, writeString, type ReplaceReason } from "./telemetryItems.js";
import { ITEM_ENTRY, ITEM_SPAN, type DropReason, type FromThread, type RecordKind, type RequestLogMethod, type TelemetryThreadSettings, type ToThread } from "./telemetryThreadProtocol.js";

const CLOSE_TIMEOUT_MS = 10_000;
const CALL_TIMEOUT_MS = 10_000;
/** How often what was handed over goes to the thread: waking a thread costs ~80 µs here. */
const SEND_EVERY_MS = 100;
/** Records held for the thread at most (and bytes): beyond either, records are dropped (`queue_full`). */
const MAX_OUTBOX = 20_000;
const MAX_OUTBOX_BYTES = 64 * 1024 * 1024;
/** Records and bytes handed over and not yet settled by the thread at most: past them, sends wait (and the outbox fills). */
const MAX_IN_FLIGHT = 50_000;
const MAX_IN_FLIGHT_BYTES = 128 * 1024 * 1024;
/** First wait before a restart; it doubles for every failure in a row, up to the maximum. */
const RESTART_DELAY_MS = 250;
const MAX_RESTART_DELAY_MS = 30_000;
/** A thread that ran this long before it died starts the backoff afresh. */
const STABLE_MS = 60_000;

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

/** What a telemetry thread reports (metrics are kept by the caller). Called synchronously; must not throw. */
export interface TelemetryThreadEvents {
  /** Records lost, and why. */
  dropped?(count: number, reason: DropReason, record: RecordKind): void;
  /** Records kept in a reduced form (e.g. parameters that cannot be serialized left out). */
  replaced?(count: number, reason: ReplaceReason, record: RecordKind): void;
  /** The thread is being started again after it died (or could not start). */
  restarted?(): void;
}

export interface TelemetryThreadOptions {
  /** First wait before a restart, in ms (default 250); doubles per failure in a row. */
  restartDelayMs?: number;
  /** Longest wait before a restart, in ms (default 30 s). */
  maxRestartDelayMs?: number;
  /**
   * When set, the thread runs only while there is telemetry: it starts at the first record or read (not at
   * `start`), and after this many ms with none, everything handed over settled, it stops cleanly (the log
   * written and closed, spans exported), to start again at the next one. An idle process holds no thread.
   */
  idleStopMs?: number;
}

/**
 * A worker thread that does a process's telemetry I/O: it batches finished spans and exports them over
 * OTLP/HTTP, and writes and reads the request log (SQLite). The serving thread only writes each finished span
 * (field by field) or entry (as JSON) into an off-heap buffer, a few microseconds each, and every 100 ms
 * transfers that buffer to the thread in one message, so exports, log writes and thread wake-ups never hold up
 * a request, and what is handed over makes next to no garbage on the serving thread.
 *
 * Nothing a request carries can break it: each record is written into the buffer whole or not at all (one
 * that cannot be encoded is dropped, or kept reduced, and counted), and the thread skips a record it cannot
 * read. Queues are bounded (records past them are dropped and counted). When the thread dies (an exit or an
 * uncaught error), what it held and had not settled is counted lost, log reads answer `unavailable`, and it is
 * started again after a backoff (250 ms, doubling to 30 s; afresh after a minute of running); records handed
 * over meanwhile wait for it in the bounded buffer.
 *
 * With `idleStopMs` the thread runs only while there is telemetry (see TelemetryThreadOptions): an idle
 * gateway does not hold the ~10 MB of a thread with SQLite loaded. Such a planned stop is not a death.
 *
 * Events: "down" (why) when the thread died or could not start; "up" when a thread (re)started; "idle" when
 * a thread stopped while idle has exited.
 */
export class TelemetryThread extends EventEmitter {
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private thread?: Worker;
  /** Why there is no thread now (it died, or could not start), while there is none. */
  private downReason?: string = "not started";
  private closing = false;
  private closed?: Promise<void>;
  private closeTimedOut = false;
  private outbox = new ByteWriter();
  private outboxSpans = 0;
  private outboxEntries = 0;
  /** Byte lengths of the frames sent and not yet read by the thread, oldest first. */
  private readonly frames: number[] = [];
  private inFlightBytes = 0;
  private spansInFlight = 0;
  private entriesInFlight = 0;
  private readonly sender: NodeJS.Timeout;
  private restartTimer?: NodeJS.Timeout;
  private failuresInRow = 0;
  private startedAt = 0;
  /** No thread, on purpose (idleStopMs): not yet needed, or stopped while idle; the next record or read starts one. */
  private dormant = false;
  private waking?: Promise<void>;
  /** A thread stopped while idle, until it has exited (a new one waits for it: one writer of the log at a time). */
  private stopping?: Promise<void>;
  private lastActivity = 0;
  /** How many times the thread was started again. */
  restarts = 0;
  private readonly replacedEntry = (reason: ReplaceReason) => this.events.replaced?.(1, reason, "entry");

  /** Starts the thread; one that cannot start is started again later (meanwhile records wait, and reads answer `unavailable`). */
  static async start(settings: TelemetryThreadSettings, logger: Logger, events: TelemetryThreadEvents = {}, options: TelemetryThreadOptions = {}): Promise<TelemetryThread> {
    const thread = new TelemetryThread(settings, logger, events, options);
    if (options.idleStopMs) {
      thread.dormant = true;
      thread.downReason = undefined;
    } else await thread.launch();
    return thread;
  }

  private constructor(
    private readonly settings: TelemetryThreadSettings,
    private readonly logger: Logger,
    private readonly events: TelemetryThreadEvents,
    private readonly options: TelemetryThreadOptions,
  ) {
    super();
    this.sender = setInterval(() => {
      this.send();
      this.stopIfIdle();
    }, SEND_EVERY_MS);
    this.sender.unref();
  }

  /** Whether a thread is running now. */
  get running(): boolean {
    return this.thread !== undefined;
  }

  /** Where finished spans go (`Tracing`'s sink): to the thread, which exports them. Never throws. */
  spanSink(): (span: FinishedSpan) => void {
    return (span) => {
      try {
        const refused = this.refusal();
        if (refused) return this.lose(1, refused, "span");
        if (writeItem(this.outbox, ITEM_SPAN, encodeSpan, span)) this.outboxSpans++;
        else return this.lose(1, "encode", "span");
        this.lastActivity = performance.now();
        if (this.dormant) void this.wake();
      } catch {
        // Nothing a span carries may fail the request that ended it.
      }
    };
  }

  /** The request log kept by the thread (when it was started with one). */
  requestLog(): RequestLogAccess {
    return {
      record: (entry) => {
        try {
          const refused = this.refusal();
          if (refused) return this.lose(1, refused, "entry");
          const json = entryJson(entry, this.replacedEntry);
          if (json === undefined || !writeItem(this.outbox, ITEM_ENTRY, writeString, json)) return this.lose(1, "encode", "entry");
          this.outboxEntries++;
          this.lastActivity = performance.now();
          if (this.dormant) void this.wake();
        } catch {
          // Never throws: a request is not failed by its log entry.
        }
      },
      get: (id) => this.call("get", id) as Promise<LoggedRequest | undefined>,
      query: (q) => this.call("query", q) as Promise<{ data: LoggedRequest[]; next: string | null }>,
      setFeedback: (id, feedback) => this.call("setFeedback", id, feedback) as Promise<LoggedRequest | undefined>,
    };
  }

  /**
   * A test hook: hands over what is waiting, then makes the thread die, by `terminate` (an exit) or `throw`
   * (an uncaught error in it), and resolves once it is down. It is started again as after any other death.
   */
  async failForTesting(how: "terminate" | "throw" = "terminate"): Promise<void> {
    await this.wake();
    const thread = this.thread;
    if (!thread) return;
    const down = new Promise<void>((resolve) => this.once("down", () => resolve()));
    this.send(true);
    if (how === "terminate") void thread.terminate();
    else thread.postMessage({ type: "fail", message: "telemetry thread test hook: uncaught error" } satisfies ToThread);
    await down;
  }

  /** Writes what the log holds, exports the spans left (a collector that is gone loses them), and stops. */
  close(): Promise<void> {
    this.closed ??= this.settle().then(() => this.closeNow());
    return this.closed;
  }

  /** Waits for a thread being started or stopped while idle, so that close finds one state. */
  private async settle(): Promise<void> {
    clearInterval(this.sender);
    while (this.waking || this.stopping) {
      await this.waking;
      await this.stopping;
    }
  }

  private closeNow(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.closing = true;
      clearTimeout(this.restartTimer);
      const thread = this.thread;
      if (!thread) {
        this.loseOutbox();
        return resolve();
      }
      const timer = setTimeout(() => {
        this.closeTimedOut = true;
        void thread.terminate();
      }, CLOSE_TIMEOUT_MS);
      thread.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      thread.ref();
      this.send(true);
      thread.postMessage({ type: "close" } satisfies ToThread);
    });
  }

  /** Starts the thread of a dormant TelemetryThread (after the one stopped while idle has exited). */
  private wake(): Promise<void> {
    if (this.dormant && !this.closing) {
      this.dormant = false;
      const waking: Promise<void> = (this.stopping ?? Promise.resolve())
        .then(() => this.launch())
        .finally(() => {
          if (this.waking === waking) this.waking = undefined;
        });
      this.waking = waking;
    }
    return this.waking ?? Promise.resolve();
  }

  /** With idleStopMs: stops a thread that has had nothing to do for that long, everything it was given settled. */
  private stopIfIdle(): void {
    const idleMs = this.options.idleStopMs;
    const thread = this.thread;
    if (!idleMs || !thread || this.closing || this.waking) return;
    if (this.outboxSpans + this.outboxEntries > 0 || this.frames.length > 0 || this.spansInFlight + this.entriesInFlight > 0 || this.pending.size > 0) return;
    if (performance.now() - this.lastActivity < idleMs) return;
    this.thread = undefined;
    this.dormant = true;
    const stopping = new Promise<void>((resolve) => {
      const timer = setTimeout(() => void thread.terminate(), CLOSE_TIMEOUT_MS);
      thread.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
    }).then(() => {
      if (this.stopping === stopping) this.stopping = undefined;
      this.emit("idle");
    });
    this.stopping = stopping;
    thread.postMessage({ type: "close" } satisfies ToThread);
  }

  /** Starts a thread (at start, or again after one died). */
  private async launch(): Promise<void> {
    let thread: Worker;
    try {
      thread = new Worker(await bundleThreadSource(), { workerData: this.settings, name: "smmf-telemetry", resourceLimits: { maxYoungGenerationSizeMb: 2 } });
    } catch (err) {
      return this.down(`the telemetry thread could not start: ${(err as Error).message}`);
    }
    if (this.closing) {
      void thread.terminate();
      return;
    }
    this.thread = thread;
    this.downReason = undefined;
    this.startedAt = this.lastActivity = performance.now();
    thread.unref();
    thread.on("message", (m: FromThread) => this.receive(thread, m));
    thread.on("error", (err) => this.died(thread, `the telemetry thread failed: ${err.message}`));
    thread.on("exit", (code) => this.died(thread, `the telemetry thread has stopped (exit code ${code})`));
    this.emit("up");
    // What was handed over while there was no thread goes now.
    this.send();
  }

  /** The thread is gone (an error, then an exit: handled once). */
  private died(thread: Worker, why: string): void {
    if (thread !== this.thread) return;
    this.thread = undefined;
    const lost = !this.closing || this.closeTimedOut;
    if (lost) {
      // What it held and had not settled (read and exported, or written) is gone with it.
      if (this.spansInFlight > 0) this.lose(this.spansInFlight, "thread_down", "span");
      if (this.entriesInFlight > 0) this.lose(this.entriesInFlight, "thread_down", "entry");
    }
    this.frames.length = 0;
    this.inFlightBytes = this.spansInFlight = this.entriesInFlight = 0;
    if (this.closing) {
      this.downReason = "closed";
      this.rejectPending("closed");
      return;
    }
    if (performance.now() - this.startedAt >= STABLE_MS) this.failuresInRow = 0;
    this.down(why);
  }

  /** No thread: reads fail, and another is started after the backoff. */
  private down(why: string): void {
    this.downReason = why;
    this.rejectPending(why);
    if (this.closing) return;
    const base = this.options.restartDelayMs ?? RESTART_DELAY_MS;
    const delay = Math.min(this.options.maxRestartDelayMs ?? MAX_RESTART_DELAY_MS, base * 2 ** this.failuresInRow);
    this.failuresInRow++;
    this.logger.warn(why, { restartInMs: delay });
    this.emit("down", why);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.closing) return;
      this.restarts++;
      this.events.restarted?.();
      void this.launch();
    }, delay);
    this.restartTimer.unref();
  }

  private rejectPending(why: string): void {
    for (const p of this.pending.values()) p.reject(new SmmfError("unavailable", `the request log is not available (${why})`));
    this.pending.clear();
  }

  private call(method: RequestLogMethod, ...args: unknown[]): Promise<unknown> {
    this.lastActivity = performance.now();
    if ((this.dormant || this.waking) && !this.closing) return this.wake().then(() => this.callNow(method, args));
    return this.callNow(method, args);
  }

  private callNow(method: RequestLogMethod, args: unknown[]): Promise<unknown> {
    const thread = this.thread;
    if (!thread || this.closing) return Promise.reject(new SmmfError("unavailable", `the request log is not available (${this.closing ? "closed" : this.downReason})`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      // A thread that does not answer (e.g. stuck on a locked database file) fails the call, not hangs it.
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SmmfError("unavailable", `the request log did not answer within ${CALL_TIMEOUT_MS / 1000} s`));
      }, CALL_TIMEOUT_MS);
      const done = () => clearTimeout(timer);
      this.pending.set(id, { resolve: (v) => (done(), resolve(v)), reject: (e) => (done(), reject(e)) });
      // After everything handed over before it: a read sees the entries recorded before it.
      this.send(true);
      thread.postMessage({ type: "call", id, method, args } satisfies ToThread);
    });
  }

  /** Why another record cannot be taken now, if it cannot. */
  private refusal(): DropReason | undefined {
    if (this.closing) return "thread_down";
    if (this.outboxSpans + this.outboxEntries >= MAX_OUTBOX || this.outbox.length >= MAX_OUTBOX_BYTES) return "queue_full";
    return undefined;
  }

  private lose(count: number, reason: DropReason, record: RecordKind): void {
    this.events.dropped?.(count, reason, record);
  }

  /** Hands the outbox to the thread: when there is one and it is keeping up (or `force`, for reads and close). */
  private send(force = false): void {
    const thread = this.thread;
    const spans = this.outboxSpans;
    const entries = this.outboxEntries;
    if (spans + entries === 0 || !thread) return;
    if (!force && (this.inFlightBytes >= MAX_IN_FLIGHT_BYTES || this.spansInFlight + this.entriesInFlight >= MAX_IN_FLIGHT)) return;
    const { buffer, length } = this.outbox.take();
    this.outboxSpans = this.outboxEntries = 0;
    this.frames.push(length);
    this.inFlightBytes += length;
    this.spansInFlight += spans;
    this.entriesInFlight += entries;
    thread.postMessage({ type: "items", buffer, length, spans, entries } satisfies ToThread, [buffer]);
  }

  private loseOutbox(): void {
    if (this.outboxSpans > 0) this.lose(this.outboxSpans, "thread_down", "span");
    if (this.outboxEntries > 0) this.lose(this.outboxEntries, "thread_down", "entry");
    this.outbox = new ByteWriter();
    this.outboxSpans = this.outboxEntries = 0;
  }

  private receive(thread: Worker, m: FromThread): void {
    const current = thread === this.thread;
    if (m.type === "dropped") {
      this.lose(m.count, m.reason, m.record);
      if (current && m.record === "span") this.spansInFlight = Math.max(0, this.spansInFlight - m.count);
      if (current && m.record === "entry") this.entriesInFlight = Math.max(0, this.entriesInFlight - m.count);
      return;
    }
    // A thread stopped while idle (no longer current) is let go once it has written everything; what it says meanwhile still counts.
    if (m.type === "closed") {
      void thread.terminate();
      return;
    }
    if (m.type === "warn") {
      this.logger.warn(m.message);
      return;
    }
    if (!current) return;
    if (m.type === "settled") {
      for (let i = 0; i < m.frames && this.frames.length > 0; i++) this.inFlightBytes -= this.frames.shift()!;
      this.spansInFlight = Math.max(0, this.spansInFlight - m.spans);
      this.entriesInFlight = Math.max(0, this.entriesInFlight - m.entries);
    } else if (m.type === "reply") {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(new SmmfError(m.error.code, m.error.message, { param: m.error.param }));
      else p?.resolve(m.result);
    }
  }
}
