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
  /** The name of the API key the request came with; null without keys. */
  keyName?: string | null;
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
  /** The API key's name. */
  key?: string;
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
  /**
   * The database's largest size in bytes (pages in use; 0 or absent: no bound): past it the oldest entries
   * are deleted, down to 90% of it, and SQLite reuses the pages they free.
   */
  maxBytes?: number;
  logger: Logger;
  /** Called with how many entries could not be written (the database could not be opened or written). */
  onDropped?: (count: number, reason: "write") => void;
  /** Called with how many entries were written (or were already there). */
  onWritten?: (count: number) => void;
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
  key_name TEXT,
  feedback_score REAL,
  feedback_comment TEXT,
  feedback_label TEXT,
  feedback_time INTEGER
);
CREATE INDEX IF NOT EXISTS requests_time ON requests (time, id);
CREATE INDEX IF NOT EXISTS requests_model_time ON requests (model, time);
`;
const SCHEMA_VERSION = 3;
const FLUSH_MS = 200;
const MAX_QUEUE = 10_000;
const PRUNE_EVERY_MS = 60_000;
/** Past the byte bound, entries are deleted down to this share of it: not a delete after every write. */
const BYTES_LOW_WATER = 0.9;
/** The write-ahead log is cut back to this after a checkpoint (SQLite checkpoints at ~4 MB by default). */
const WAL_SIZE_LIMIT = 8 * 1024 * 1024;

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
  key_name: string | null;
  feedback_score: number | null;
  feedback_comment: string | null;
  feedback_label: string | null;
  feedback_time: number | null;
}

/** Parameters larger than this (as JSON) are not kept: a request cannot make the log keep a huge row. */
export const MAX_PARAMS_CHARS = 8 * 1024;

function cappedParams(params: Record<string, unknown>): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(params ?? {}) as string | undefined;
  } catch {
    return JSON.stringify({ _omitted: "parameters that cannot be written as JSON are not kept" });
  }
  return json !== undefined && json.length <= MAX_PARAMS_CHARS ? json : JSON.stringify({ _omitted: `parameters over ${MAX_PARAMS_CHARS} characters are not kept` });
}

/** A UTF-16 half without its other half. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Text as SQLite keeps it: a lone surrogate becomes one U+FFFD (SQLite's UTF-8 would make it three). */
function text(v: string | null | undefined): string | null {
  return typeof v === "string" ? v.replace(LONE_SURROGATE, "\ufffd") : (v ?? null);
}

/** The row's values: fields an entry lacks (it came as JSON, where undefined is left out) are null. */
function rowOf(e: RequestEntry): Record<string, unknown> {
  return {
    id: e.id,
    time: e.time,
    endpoint: e.endpoint,
    model: text(e.model),
    instance: e.instance ?? null,
    engine: e.engine ?? null,
    stream: e.stream ? 1 : 0,
    params: cappedParams(e.params),
    prompt: text(e.prompt),
    output: text(e.output),
    status: e.status,
    errorCode: e.errorCode ?? null,
    errorMessage: text(e.errorMessage),
    latencyMs: e.latencyMs,
    ttftMs: e.ttftMs ?? null,
    promptTokens: e.promptTokens ?? null,
    completionTokens: e.completionTokens ?? null,
    retries: e.retries ?? 0,
    traceId: e.traceId ?? null,
    clientRequestId: e.clientRequestId ?? null,
    keyName: e.keyName ?? null,
  };
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
    keyName: r.key_name ?? null,
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
 * count, pruned every minute) and a bound in bytes (checked after every write). When the database cannot be
 * opened or written, entries are dropped and counted; requests never wait for it or fail because of it.
 *
 * The byte bound counts the pages in use (page_count − freelist_count, times page_size). Past it the oldest
 * rows are deleted until the pages in use are under 90% of it; the pages they free go to SQLite's free list
 * and the next rows are written into them, so the file stops growing at about the bound (plus one batch).
 * No incremental vacuum: the file is not shrunk while running. Only when it opens a file much larger than
 * its bound (the bound was lowered) does the log VACUUM it once, down to the rows it keeps.
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
      db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
      // SQLite's page cache (better-sqlite3 builds it up to 16 MB) stays small: the log is mostly written, and
      // a gateway's memory should not creep with it.
      db.pragma("cache_size = -2048");
      db.exec(SCHEMA);
      // Version 1 had no client_request_id, version 2 no key_name.
      const columns = new Set((db.prepare("PRAGMA table_info(requests)").all() as { name: string }[]).map((c) => c.name));
      if (!columns.has("client_request_id")) db.exec("ALTER TABLE requests ADD COLUMN client_request_id TEXT");
      if (!columns.has("key_name")) db.exec("ALTER TABLE requests ADD COLUMN key_name TEXT");
      // No index on key_name: each one costs every write, and a filter by key walks the time index newest first,
      // stopping at a page of matches (only a rare key makes it read far).
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
      log.db = db;
      log.insert = db.prepare(
        // Ids are the server's own: a row is never replaced (feedback on it could be lost).
        `INSERT OR IGNORE INTO requests (id, time, endpoint, model, instance, engine, stream, params, prompt, output, status, error_code, error_message, latency_ms, ttft_ms, prompt_tokens, completion_tokens, retries, trace_id, client_request_id, key_name)
         VALUES (@id, @time, @endpoint, @model, @instance, @engine, @stream, @params, @prompt, @output, @status, @errorCode, @errorMessage, @latencyMs, @ttftMs, @promptTokens, @completionTokens, @retries, @traceId, @clientRequestId, @keyName)`,
      );
      log.prune();
      log.compactIfOversized();
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
    if (this.failure !== undefined) {
      this.dropped(1, "write");
      return;
    }
    // A full queue is written at once (the log runs on its own thread: nothing waits for it).
    if (this.queue.length >= MAX_QUEUE) this.flush();
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
    if (batch.length === 0) return;
    const db = this.db;
    if (!db || !this.insert) return this.dropped(batch.length, "write");
    const insert = this.insert;
    const write = (e: RequestEntry) => insert.run(rowOf(e));
    try {
      db.transaction((entries: RequestEntry[]) => entries.forEach(write))(batch);
      this.options.onWritten?.(batch.length);
    } catch (err) {
      // The database is locked by someone else (SQLite waited its 5 s busy timeout): each entry on its own would
      // wait as long again, so the batch is dropped (counted) and the log goes on with the next.
      if ((err as { code?: string }).code === "SQLITE_BUSY") {
        this.dropped(batch.length, "write");
        this.warn(`could not write ${batch.length} request-log entries: ${(err as Error).message}`);
        return;
      }
      // One entry the database refuses does not cost the others: each on its own, the failing ones dropped.
      let failed = 0;
      for (const e of batch) {
        try {
          write(e);
        } catch {
          failed++;
        }
      }
      if (failed < batch.length) this.options.onWritten?.(batch.length - failed);
      if (failed > 0) {
        this.dropped(failed, "write");
        this.warn(`could not write ${failed} request-log entries: ${(err as Error).message}`);
      }
    }
    this.enforceBytes();
  }

  /** Bytes of the database: the pages in use, and the file's pages (in use or free). */
  sizeBytes(): { used: number; file: number } {
    if (!this.db) return { used: 0, file: 0 };
    const pageSize = this.db.pragma("page_size", { simple: true }) as number;
    const pages = this.db.pragma("page_count", { simple: true }) as number;
    const free = this.db.pragma("freelist_count", { simple: true }) as number;
    return { used: (pages - free) * pageSize, file: pages * pageSize };
  }

  /** Past the byte bound: deletes the oldest entries until the pages in use are under 90% of it. Returns how many. */
  private enforceBytes(): number {
    const max = this.options.maxBytes ?? 0;
    if (!this.db || !(max > 0)) return 0;
    try {
      let { used } = this.sizeBytes();
      if (used <= max) return 0;
      const target = max * BYTES_LOW_WATER;
      const db = this.db;
      const count = db.prepare("SELECT count(*) AS n FROM requests").pluck();
      const deleteOldest = db.prepare("DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests ORDER BY time, id LIMIT ?)");
      let deleted = 0;
      // Rows in proportion to the excess; a page frees only once all its rows are gone, so measure again.
      for (let round = 0; round < 20 && used > target; round++) {
        const rows = count.get() as number;
        if (rows === 0) break;
        deleted += deleteOldest.run(Math.max(1, Math.ceil((rows * (used - target)) / used))).changes;
        used = this.sizeBytes().used;
      }
      return deleted;
    } catch (err) {
      this.warn(`could not keep the request log under ${max} bytes: ${(err as Error).message}`);
      return 0;
    }
  }

  /** A file over 1.5 times the byte bound (a lowered bound): VACUUM it down to what is kept. */
  private compactIfOversized(): void {
    const max = this.options.maxBytes ?? 0;
    if (!this.db || !(max > 0)) return;
    this.enforceBytes();
    if (this.sizeBytes().file > max * 1.5) this.db.exec("VACUUM");
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
    if (q.key !== undefined) (where.push("key_name = @key"), (args.key = q.key));
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
      return old + extra + this.enforceBytes();
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

  private dropped(count: number, reason: "write"): void {
    this.options.onDropped?.(count, reason);
  }

  private warn(message: string): void {
    if (Date.now() - this.lastWarning < 60_000) return;
    this.lastWarning = Date.now();
    this.options.logger.warn(message);
  }
}
