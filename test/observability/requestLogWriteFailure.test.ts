import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// README, "Observability", Request log: "A log that cannot be opened or written drops its entries (counted in
// `smmf_request_log_dropped_total`) and never fails or slows a request." The log here opens fine, in a temp
// folder; then its writes are made to fail from outside SMMF, through another connection to the same SQLite
// file, as another process could: first every insert is refused (a trigger), then the database is locked
// (a write transaction held open, so the log's writes wait on SQLite's busy timeout and fail with
// SQLITE_BUSY). The client must see every request answered in full, never waiting for the log.
const MODEL = "stories260K";
let dir: string;
let server: TestServer;
/** The test's own connection to the gateway's request log. */
let db: Database.Database;

async function dropped(): Promise<{ total: number; write: number }> {
  const samples = promSamples(await (await fetch(`${server.url}/metrics`)).text());
  return {
    total: promValue(samples, "smmf_request_log_dropped_total"),
    write: promValue(samples, "smmf_telemetry_dropped_total", { record: "entry", reason: "write" }),
  };
}

/** One short non-streaming completion; its request id. Fails the test unless it is answered in full. */
async function completion(): Promise<string> {
  const { data, response } = await server.openai.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 6 }).withResponse();
  expect(data.choices[0]?.finish_reason).toBe("length");
  expect(data.usage?.completion_tokens).toBe(6);
  expect(data.choices[0]?.text.length).toBeGreaterThan(0);
  return response.headers.get("x-request-id")!;
}

/** One short streaming chat; its request id (the chunks' id). Fails the test unless it is answered in full. */
async function streamedChat(): Promise<string> {
  const stream = await server.openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 6, stream: true, stream_options: { include_usage: true } });
  let id = "";
  let chunks = 0;
  let usage: number | undefined;
  let finish: string | null = null;
  for await (const c of stream) {
    id = c.id;
    if (c.usage) usage = c.usage.completion_tokens;
    const choice = c.choices[0];
    if (choice?.delta.content) chunks++;
    if (choice?.finish_reason) finish = choice.finish_reason;
  }
  expect({ usage, finish }).toEqual({ usage: 6, finish: "length" });
  expect(chunks).toBeGreaterThan(0);
  return id;
}

/** The ids the log lists (newest first); the read is answered after every entry handed over before it. */
async function loggedIds(): Promise<string[]> {
  const res = await fetch(`${server.url}/api/v1/requests?limit=100`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { data: { id: string }[] }).data.map((e) => e.id);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "smmf-reqlog-fail-"));
  server = await startTestServer({ requestLog: "on", dataDir: dir });
}, 60_000);

afterAll(async () => {
  if (db?.open) {
    if (db.inTransaction) db.exec("ROLLBACK");
    db.close();
  }
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("request log: writes that fail after the log opened", () => {
  it("inserts refused by the database: requests are answered in full, their entries dropped and counted; the log recovers", async () => {
    // The log opened and writes.
    const before = [await completion(), await streamedChat()];
    expect(await loggedIds()).toEqual([...before].reverse());
    expect(await dropped()).toEqual({ total: 0, write: 0 });

    // From now on the database refuses every insert into the log's table.
    db = new Database(join(dir, "requests.db"));
    db.exec("CREATE TRIGGER refuse_writes BEFORE INSERT ON requests BEGIN SELECT RAISE(ABORT, 'writes refused by the test'); END");
    const refused = [await completion(), await streamedChat(), await completion(), await streamedChat()];
    expect(new Set(refused).size).toBe(4);

    // Each entry that could not be written is counted, once.
    await expect.poll(dropped, { timeout: 20_000, interval: 100 }).toEqual({ total: refused.length, write: refused.length });
    // Reads still work: the rows from before are there, the refused ones are not.
    const listed = await loggedIds();
    expect(listed).toEqual([...before].reverse());
    for (const id of refused) expect((await fetch(`${server.url}/api/v1/requests/${id}`)).status).toBe(404);

    // Once the database takes inserts again, new entries are written again.
    db.exec("DROP TRIGGER refuse_writes");
    const after = await completion();
    expect(await loggedIds()).toEqual([after, ...[...before].reverse()]);
    expect(await dropped()).toEqual({ total: refused.length, write: refused.length });
  }, 60_000);

  it("a database locked by another writer: requests are answered while the log's write waits, then fails; nothing is lost unaccounted", async () => {
    const droppedBefore = (await dropped()).total;
    const loggedBefore = new Set(await loggedIds());

    // Another connection holds the write lock: the log's writes wait on SQLite's busy timeout, then fail.
    db.exec("BEGIN EXCLUSIVE");
    const first = await completion();
    // A read of the log is answered by the log's thread after the entries handed over before it: it cannot be
    // answered before the write of the first request's entry has given up. While it is pending, that write is
    // stuck on the lock.
    let readSettled = false;
    const read = fetch(`${server.url}/api/v1/requests?limit=100`).finally(() => (readSettled = true));
    const during = [await streamedChat(), await completion(), await streamedChat()];
    // These requests were answered in full while the log could not write: none waited for it.
    expect(readSettled).toBe(false);
    expect((await dropped()).total).toBe(droppedBefore);

    // The write gives up (SQLITE_BUSY, after SQLite's busy timeout) and its entries are counted as dropped.
    await expect.poll(async () => (await dropped()).total, { timeout: 45_000, interval: 100 }).toBeGreaterThan(droppedBefore);
    // (The read, stuck behind that write, is answered once it is through, or answers 503 if that took longer than
    // the read may wait.)
    expect([200, 503]).toContain((await read).status);

    // With the lock released, the entries that had not been tried yet are written. Every request of this test is
    // either in the log or counted as dropped, never both and never neither.
    db.exec("ROLLBACK");
    const ids = [first, ...during];
    const listed = new Set(await loggedIds());
    const written = ids.filter((id) => listed.has(id) && !loggedBefore.has(id));
    const { total, write } = await dropped();
    expect(total).toBe(write);
    expect(written.length + (total - droppedBefore)).toBe(ids.length);
    // The first request's entry was the one stuck on the lock: dropped.
    expect(written).not.toContain(first);
  }, 60_000);
});
