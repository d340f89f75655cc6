import type { ByteReader } from "./ByteReader.js";
import type { ByteWriter } from "./ByteWriter.js";
import type { RequestEntry } from "./RequestLog.js";

// What the serving thread hands to the telemetry thread is a frame of items, each `tag (u8) | length (u32) |
// body`. An item is written whole or not at all: whatever a request carried, the frame is never left
// half-written, and the thread can skip an item it cannot read and go on with the next.

/** Characters of a prompt or an output kept with capture "truncated" (and of a reduced entry's). */
export const TRUNCATED_CHARS = 2_000;

/** Bytes before an item's body: its tag and its length. */
const HEADER_BYTES = 5;

/**
 * Writes one item: its tag and length, then what `encode` writes of `value`. When `encode` throws (a value
 * that cannot be encoded, a buffer that cannot grow), nothing of the item stays and false is returned.
 * `encode` is a plain function, not a closure: writing an item allocates nothing.
 */
export function writeItem<T>(w: ByteWriter, tag: number, encode: (w: ByteWriter, value: T) => void, value: T): boolean {
  const start = w.length;
  try {
    w.u8(tag);
    w.u32(0);
    encode(w, value);
    w.u32At(start + 1, w.length - start - HEADER_BYTES);
    return true;
  } catch {
    w.rewind(start);
    return false;
  }
}

/**
 * Reads the items of a frame: `read` gets each one's tag and a reader over its body alone. An item `read`
 * throws on is reported to `failed` and skipped; a frame whose item headers do not add up stops there.
 * Returns how many items were read (well or not).
 */
export function readItems(r: ByteReader, read: (tag: number, item: ByteReader) => void, failed: (tag: number, err: unknown) => void): number {
  let count = 0;
  while (!r.done) {
    let tag: number;
    let item: ByteReader;
    try {
      tag = r.u8();
      item = r.item(r.u32());
    } catch {
      return count;
    }
    count++;
    try {
      read(tag, item);
    } catch (err) {
      failed(tag, err);
    }
  }
  return count;
}

export function writeString(w: ByteWriter, value: string): void {
  w.string(value);
}

/**
 * Largest request-log entry handed over, in characters of JSON: a request cannot make the serving thread
 * copy (or the log keep) an entry of any size. A bigger entry is kept reduced (see `entryJson`).
 */
export const MAX_ENTRY_CHARS = 16 * 1024 * 1024;

/** Why an entry was kept in a reduced form. */
export type ReplaceReason = "unserializable" | "too_large";

const REASONS: Record<ReplaceReason, string> = {
  unserializable: "parameters that cannot be written as JSON are not kept",
  too_large: `entries over ${MAX_ENTRY_CHARS} characters keep no parameters and ${TRUNCATED_CHARS} characters of prompt and output`,
};

function text(v: unknown, max: number): string | null {
  return typeof v === "string" ? (v.length > max ? v.slice(0, max) : v) : null;
}

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** The entry with only what is certain to serialize: strings and numbers of its own fields, parameters omitted. */
function reduced(e: RequestEntry, reason: ReplaceReason): RequestEntry {
  const max = reason === "too_large" ? TRUNCATED_CHARS : Infinity;
  const short = (v: unknown) => text(v, 1024);
  return {
    id: short(e.id) ?? "",
    time: num(e.time) ?? 0,
    endpoint: short(e.endpoint) ?? "",
    model: short(e.model) ?? "",
    instance: short(e.instance),
    engine: short(e.engine),
    stream: e.stream === true,
    params: { _omitted: REASONS[reason] },
    prompt: text(e.prompt, max),
    output: text(e.output, max),
    status: num(e.status) ?? 0,
    errorCode: short(e.errorCode),
    errorMessage: text(e.errorMessage, TRUNCATED_CHARS),
    latencyMs: num(e.latencyMs) ?? 0,
    ttftMs: num(e.ttftMs),
    promptTokens: num(e.promptTokens),
    completionTokens: num(e.completionTokens),
    retries: num(e.retries) ?? 0,
    traceId: short(e.traceId),
    clientRequestId: short(e.clientRequestId),
    keyName: short(e.keyName),
  };
}

function stringify(value: unknown): string | undefined {
  try {
    const json = JSON.stringify(value) as string | undefined;
    return typeof json === "string" ? json : undefined;
  } catch {
    // Too deep (RangeError), a BigInt or a cycle (TypeError), a toJSON that throws: not as it is.
    return undefined;
  }
}

/**
 * A request-log entry as JSON, whatever it carries: as it is when it serializes and is at most
 * `MAX_ENTRY_CHARS`; otherwise reduced (its parameters replaced by a note; prompt and output cut when it was
 * too large), the reason told to `replaced`; undefined when not even that serializes (the entry is dropped).
 * Lone surrogates need nothing here: JSON.stringify writes them as escapes. (No object is made for the result:
 * this runs once per request on the serving thread.)
 */
export function entryJson(entry: RequestEntry, replaced?: (reason: ReplaceReason) => void): string | undefined {
  const json = stringify(entry);
  if (json !== undefined && json.length <= MAX_ENTRY_CHARS) return json;
  let reason: ReplaceReason = json === undefined ? "unserializable" : "too_large";
  let smaller: string | undefined;
  try {
    smaller = stringify(reduced(entry, reason));
    if (smaller !== undefined && smaller.length > MAX_ENTRY_CHARS) smaller = stringify(reduced(entry, (reason = "too_large")));
  } catch {
    // Fields whose reading throws (getters): nothing to keep.
    return undefined;
  }
  if (smaller === undefined || smaller.length > MAX_ENTRY_CHARS) return undefined;
  replaced?.(reason);
  return smaller;
}
