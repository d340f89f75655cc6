import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { Database, Statement } from "better-sqlite3";
import { SmmfError } from "../errors/SmmfError.js";
import type { Logger } from "./createLogger.js";

/** One request, as the request log keeps it. */
export interface RequestEntry {
  id: string;
  /** Unix milliseconds when the request arrived. */
  time: number;
  endpoint: string;
  model: string;
  instance: string | null;
  engine: string | null;
  stream: boolean;
  /** Sampling and other parameters, as sent. */
  params: Record<string, unknown>;
  /** The prompt (chat messages as JSON) per the capture setting; null when not captured. */
  prompt: string | null;
  output: string | null;
  /** HTTP status answered (499: the client went away). */
  status: number;
  errorCode: string | null;
  errorMessage: string | null;
  latencyMs: number;
  ttftMs: number | null;
  promptTokens: number | null;
  completionTokens: number | null;
  retries: number;
  traceId: string | null;
  /** The id the caller gave the request (gRPC `request_id`), kept beside the server's own `id`. */
  clientRequestId?: string | null;
}

export interface Feedback {
  score: number;
  comment: string | null;
  label: string | null;
  /** Unix milliseconds. */
  time: number;
}

export type LoggedRequest = RequestEntry & { feedback: Feedback | null };

export interface RequestQuery {
  model?: string;
  status?: number;
  /** Unix milliseconds, inclusive. */
  since?: number;
  /** Unix milliseconds, exclusive. */
  until?: number;
  limit: number;
  /** Cursor from a previous page: entries older than it. */
  before?: string;
}

export interface RequestLogOptions {
  /** SQLite file. */
  path: string;
  /** Entries older than this are deleted. */
  retentionDays: number;
  /** At most this many entries are kept (the oldest go first). */
  maxRows: number;
  logger: Logger;
  /** Called with how many entries could not be written. */
  onDropped?: (count: number) => void;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS requests (
  id TEXT PRIMARY KEY,
  time INTEGER NOT NULL,
  endpoint TEXT NOT NULL,
  model TEXT NOT NULL,
  instance TEXT,
  engine TEXT,
  stream INTEGER NOT NULL,
  params TEXT NOT NULL,
  prompt TEXT,
  output TEXT,
  status INTEGER NOT NULL,
  error_code TEXT,
  error_message TEXT,
  latency_ms REAL NOT NULL,
  ttft_ms REAL,
  prompt_tokens INTEGER,
  completion_tokens INTEGER,
  retries INTEGER NOT NULL,
  trace_id TEXT,
  client_request_id TEXT,
  feedback_score REAL,
  feedback_comment TEXT,
  feedback_label TEXT,
  feedback_time INTEGER
);
CREATE INDEX IF NOT EXISTS requests_time ON requests (time, id);
CREATE INDEX IF NOT EXISTS requests_model_time ON requests (model, time);
`;
const SCHEMA_VERSION = 2;
const FLUSH_MS = 200;
const MAX_QUEUE = 10_000;
const PRUNE_EVERY_MS = 60_000;

interface Row {
  id: string;
  time: number;
  endpoint: string;
  model: string;
  instance: string | null;
  engine: string | null;
  stream: number;
  params: string;
  prompt: string | null;
  output: string | null;
  status: number;
  error_code: string | null;
  error_message: string | null;
  latency_ms: number;
  ttft_ms: number | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  retries: number;
  trace_id: string | null;
  client_request_id: string | null;
  feedback_score: number | null;
  feedback_comment: string | null;
  feedback_label: string | null;
  feedback_time: number | null;
}

/** Parameters larger than this (as JSON) are not kept: a request cannot make the log keep a huge row. */
export const MAX_PARAMS_CHARS = 8 * 1024;

function cappedParams(params: Record<string, unknown>): string {
  const json = JSON.stringify(params);
  return json.length <= MAX_PARAMS_CHARS ? json : JSON.stringify({ _omitted: `parameters over ${MAX_PARAMS_CHARS} characters are not kept` });
}

function fromRow(r: Row): LoggedRequest {
  return {
    id: r.id,
    time: r.time,
    endpoint: r.endpoint,
    model: r.model,
    instance: r.instance,
    engine: r.engine,
    stream: r.stream === 1,
    params: JSON.parse(r.params) as Record<string, unknown>,
    prompt: r.prompt,
    output: r.output,
    status: r.status,
    errorCode: r.error_code,
    errorMessage: r.error_message,
    latencyMs: r.latency_ms,
    ttftMs: r.ttft_ms,
    promptTokens: r.prompt_tokens,
    completionTokens: r.completion_tokens,
    retries: r.retries,
    traceId: r.trace_id,
    clientRequestId: r.client_request_id,
    feedback: r.feedback_score === null ? null : { score: r.feedback_score, comment: r.feedback_comment, label: r.feedback_label, time: r.feedback_time ?? 0 },
  };
}

function cursorOf(entry: { time: number; id: string }): string {
  return Buffer.from(`${entry.time}:${entry.id}`).toString("base64url");
}

function parseCursor(cursor: string): { time: number; id: string } {
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  const colon = text.indexOf(":");
  const time = Number(text.slice(0, colon));
  if (colon <= 0 || !Number.isInteger(time)) throw new SmmfError("invalid_argument", "'before' is not a cursor this API gave", { param: "before" });
  return { time, id: text.slice(colon + 1) };
}

/**
 * The request log: one row per request in SQLite (better-sqlite3), written off the request path — entries
 * queue in memory and are written in one transaction every 200 ms — with bounded retention (age and row
 * count, pruned every minute). When the database cannot be opened or written, entries are dropped and
 * counted; requests never wait for it or fail because of it.
 */
export class RequestLog {
  private db?: Database;
  private insert?: Statement;
  private queue: RequestEntry[] = [];
  private flushTimer?: NodeJS.Timeout;
  private readonly pruneTimer: NodeJS.Timeout;
  private readonly options: RequestLogOptions;
  /** Why the log is not available, when it is not. */
  private failure?: string;
  private lastWarning = 0;

  private constructor(options: RequestLogOptions) {
    this.options = options;
    this.pruneTimer = setInterval(() => this.prune(), PRUNE_EVERY_MS);
    this.pruneTimer.unref();
  }

  /** Opens (or creates) the log; a log that cannot be opened still accepts entries, and drops them. */
  static async open(options: RequestLogOptions): Promise<RequestLog> {
    const log = new RequestLog(options);
    try {
      const { default: SqliteDatabase } = await import("better-sqlite3");
      mkdirSync(dirname(options.path), { recursive: true });
      const db = new SqliteDatabase(options.path);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.exec(SCHEMA);
      // Version 1 had no client_request_id.
      if (!(db.prepare("PRAGMA table_info(requests)").all() as { name: string }[]).some((c) => c.name === "client_request_id")) db.exec("ALTER TABLE requests ADD COLUMN client_request_id TEXT");
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
      log.db = db;
      log.insert = db.prepare(
        // Ids are the server's own: a row is never replaced (feedback on it could be lost).
        `INSERT OR IGNORE INTO requests (id, time, endpoint, model, instance, engine, stream, params, prompt, output, status, error_code, error_message, latency_ms, ttft_ms, prompt_tokens, completion_tokens, retries, trace_id, client_request_id)
         VALUES (@id, @time, @endpoint, @model, @instance, @engine, @stream, @params, @prompt, @output, @status, @errorCode, @errorMessage, @latencyMs, @ttftMs, @promptTokens, @completionTokens, @retries, @traceId, @clientRequestId)`,
      );
      log.prune();
    } catch (err) {
      log.fail(`cannot open ${options.path}: ${(err as Error).message}`);
    }
    return log;
  }

  get available(): boolean {
    return this.failure === undefined;
  }

  /** Queues an entry; returns at once. */
  record(entry: RequestEntry): void {
    if (this.failure !== undefined || this.queue.length >= MAX_QUEUE) {
      this.dropped(1);
      return;
    }
    this.queue.push(entry);
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
      this.flushTimer.unref();
    }
  }

  /** Writes what is queued now. */
  flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0 || !this.db || !this.insert) return;
    try {
      const insert = this.insert;
      this.db.transaction((entries: RequestEntry[]) => {
        for (const e of entries) insert.run({ ...e, stream: e.stream ? 1 : 0, params: cappedParams(e.params), clientRequestId: e.clientRequestId ?? null });
      })(batch);
    } catch (err) {
      this.dropped(batch.length);
      this.warn(`could not write ${batch.length} request-log entries: ${(err as Error).message}`);
    }
  }

  private ready(): Database {
    if (!this.db) throw new SmmfError("unavailable", `the request log is not available (${this.failure ?? "not open"})`);
    this.flush();
    return this.db;
  }

  get(id: string): LoggedRequest | undefined {
    const row = this.ready().prepare("SELECT * FROM requests WHERE id = ?").get(id) as Row | undefined;
    return row && fromRow(row);
  }

  /** Newest first; `next` is the cursor of the following page, when there is one. */
  query(q: RequestQuery): { data: LoggedRequest[]; next: string | null } {
    const where: string[] = [];
    const args: Record<string, unknown> = { limit: q.limit + 1 };
    if (q.model !== undefined) (where.push("model = @model"), (args.model = q.model));
    if (q.status !== undefined) (where.push("status = @status"), (args.status = q.status));
    if (q.since !== undefined) (where.push("time >= @since"), (args.since = q.since));
    if (q.until !== undefined) (where.push("time < @until"), (args.until = q.until));
    if (q.before !== undefined) {
      const c = parseCursor(q.before);
      where.push("(time < @ct OR (time = @ct AND id < @cid))");
      Object.assign(args, { ct: c.time, cid: c.id });
    }
    const sql = `SELECT * FROM requests ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY time DESC, id DESC LIMIT @limit`;
    const rows = (this.ready().prepare(sql).all(args) as Row[]).map(fromRow);
    const more = rows.length > q.limit;
    const data = more ? rows.slice(0, q.limit) : rows;
    return { data, next: more ? cursorOf(data[data.length - 1]) : null };
  }

  /** Stores feedback on a logged request; undefined when there is no such request. */
  setFeedback(id: string, feedback: Omit<Feedback, "time">): LoggedRequest | undefined {
    const db = this.ready();
    const res = db
      .prepare("UPDATE requests SET feedback_score = @score, feedback_comment = @comment, feedback_label = @label, feedback_time = @time WHERE id = @id")
      .run({ id, ...feedback, time: Date.now() });
    return res.changes === 0 ? undefined : this.get(id);
  }

  /** Deletes entries past the retention age or beyond the row limit. */
  prune(): number {
    if (!this.db) return 0;
    try {
      this.flush();
      const old = this.db.prepare("DELETE FROM requests WHERE time < ?").run(Date.now() - this.options.retentionDays * 86_400_000).changes;
      const extra = this.db.prepare("DELETE FROM requests WHERE id IN (SELECT id FROM requests ORDER BY time DESC, id DESC LIMIT -1 OFFSET ?)").run(this.options.maxRows).changes;
      return old + extra;
    } catch (err) {
      this.warn(`could not prune the request log: ${(err as Error).message}`);
      return 0;
    }
  }

  close(): void {
    clearInterval(this.pruneTimer);
    this.flush();
    this.db?.close();
    this.db = undefined;
  }

  private fail(why: string): void {
    this.failure = why;
    this.warn(`request log disabled: ${why}`);
  }

  private dropped(count: number): void {
    this.options.onDropped?.(count);
  }

  private warn(message: string): void {
    if (Date.now() - this.lastWarning < 60_000) return;
    this.lastWarning = Date.now();
    this.options.logger.warn(message);
  }
}
