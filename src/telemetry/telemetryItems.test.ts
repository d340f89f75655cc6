import { describe, expect, it } from "vitest";
import { ByteReader } from "./ByteReader.js";
import { ByteWriter } from "./ByteWriter.js";
import type { RequestEntry } from "./RequestLog.js";
import { entryJson, MAX_ENTRY_CHARS, readItems, TRUNCATED_CHARS, writeItem, writeString } from "./telemetryItems.js";

function entry(overrides: Partial<RequestEntry> = {}): RequestEntry {
  return { id: "r1", time: 1, endpoint: "chat_completions", model: "m", instance: null, engine: null, stream: false, params: { max_tokens: 3 }, prompt: "p", output: "o", status: 400, errorCode: "invalid_argument", errorMessage: "no", latencyMs: 1, ttftMs: null, promptTokens: null, completionTokens: null, retries: 0, traceId: null, ...overrides };
}

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = { v };
  return v;
}

/** Reads back a frame: [tag, string] per item, and the tags of the items that failed. */
function readBack(w: ByteWriter): { items: [number, string][]; failed: number[]; count: number } {
  const { buffer, length } = w.take();
  const items: [number, string][] = [];
  const failed: number[] = [];
  const count = readItems(new ByteReader(buffer, length), (tag, r) => {
    const s = r.string();
    if (s === "unreadable") throw new Error("cannot read");
    items.push([tag, s]);
  }, (tag) => failed.push(tag));
  return { items, failed, count };
}

describe("the items handed to the telemetry thread", () => {
  it("an item whose encoding throws half-way leaves nothing of itself; the items around it are read", () => {
    const w = new ByteWriter();
    expect(writeItem(w, 1, writeString, "first")).toBe(true);
    const throwsHalfWay = (bw: ByteWriter, v: string) => {
      bw.string(v);
      bw.u32(7);
      throw new RangeError("Maximum call stack size exceeded");
    };
    expect(writeItem(w, 2, throwsHalfWay, "second")).toBe(false);
    // A string too large for any buffer (length × 3 bytes is asked for) fails the same way.
    expect(writeItem(w, 2, (bw: ByteWriter, v: number) => bw.string({ length: v } as unknown as string), 2 ** 40)).toBe(false);
    expect(writeItem(w, 1, writeString, "third ✓ \ud800")).toBe(true);
    expect(readBack(w)).toEqual({ items: [[1, "first"], [1, "third ✓ \ufffd"]], failed: [], count: 2 });
  });

  it("the reader skips an item it cannot read, and stops at a frame whose lengths do not add up", () => {
    const w = new ByteWriter();
    writeItem(w, 1, writeString, "a");
    writeItem(w, 2, writeString, "unreadable");
    writeItem(w, 1, writeString, "b");
    expect(readBack(w)).toEqual({ items: [[1, "a"], [1, "b"]], failed: [2], count: 3 });

    const cut = new ByteWriter();
    writeItem(cut, 1, writeString, "whole");
    writeItem(cut, 1, writeString, "cut short");
    const { buffer, length } = cut.take();
    const items: string[] = [];
    expect(readItems(new ByteReader(buffer, length - 3), (_, r) => items.push(r.string()), () => undefined)).toBe(1);
    expect(items).toEqual(["whole"]);
  });

  it("an item's reader cannot read into the next item", () => {
    const w = new ByteWriter();
    writeItem(w, 1, (bw: ByteWriter, v: number) => bw.u8(v), 5);
    writeItem(w, 1, writeString, "next");
    const { buffer, length } = w.take();
    const failed: unknown[] = [];
    const seen: string[] = [];
    readItems(new ByteReader(buffer, length), (_, r) => seen.push(r.string()), (_, err) => failed.push(err));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toBeInstanceOf(RangeError);
    expect(seen).toEqual(["next"]);
  });

  describe("a request-log entry as JSON", () => {
    it("is the entry as it is when it serializes", () => {
      const e = entry({ params: { stop: ["a", "b"] } });
      const reasons: string[] = [];
      expect(entryJson(e, (r) => reasons.push(r))).toBe(JSON.stringify(e));
      expect(reasons).toEqual([]);
    });

    it.each([
      ["nested 100,000 deep", { stop: nested(100_000) }],
      ["a BigInt", { seed: 12n }],
      ["a toJSON that throws", { stop: { toJSON: () => { throw new Error("no"); } } }],
    ])("keeps the entry without its parameters when they cannot be serialized: %s", (_, params) => {
      const reasons: string[] = [];
      const out = entryJson(entry({ params: params as Record<string, unknown> }), (r) => reasons.push(r))!;
      expect(reasons).toEqual(["unserializable"]);
      expect(JSON.parse(out)).toMatchObject({ id: "r1", status: 400, prompt: "p", params: { _omitted: "parameters that cannot be written as JSON are not kept" } });
    });

    it("cuts an entry over the size bound to a short prompt and output", () => {
      const reasons: string[] = [];
      const out = entryJson(entry({ prompt: "p".repeat(MAX_ENTRY_CHARS), output: "o".repeat(10) }), (r) => reasons.push(r))!;
      expect(reasons).toEqual(["too_large"]);
      const back = JSON.parse(out) as RequestEntry;
      expect(back.prompt).toHaveLength(TRUNCATED_CHARS);
      expect(back.output).toBe("o".repeat(10));
    });

    it("keeps lone surrogates as JSON escapes, and odd field values as nulls when reduced", () => {
      expect(JSON.parse(entryJson(entry({ prompt: "\udc00x" }))!)).toMatchObject({ prompt: "\udc00x" });
      const odd = entryJson(entry({ params: { s: 1n }, ttftMs: NaN, instance: 5 as never }))!;
      expect(JSON.parse(odd)).toMatchObject({ ttftMs: null, instance: null });
    });

    it("is undefined (dropped) when not even the reduced entry can be read", () => {
      const e = entry({ params: { s: 1n } });
      Object.defineProperty(e, "id", { get: () => { throw new Error("unreadable"); }, enumerable: true });
      expect(entryJson(e)).toBeUndefined();
    });
  });
});
