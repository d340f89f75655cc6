import type { Attributes, AttributeValue, SpanContext } from "@opentelemetry/api";
import type { ByteReader } from "./ByteReader.js";
import type { ByteWriter } from "./ByteWriter.js";
import type { FinishedSpan } from "./RecordedSpan.js";
import { SCOPE, spanTimes, toSpanRecord, type ContextRecord, type SpanRecord } from "./spanRecord.js";

// Value tags of attributes.
const STRING = 0;
const NUMBER = 1;
const BOOLEAN = 2;
const ARRAY = 3;
const NULL = 4;

function writeContext(w: ByteWriter, c: SpanContext): void {
  w.string(c.traceId);
  w.string(c.spanId);
  w.u8(c.traceFlags);
  w.u8(c.isRemote ? 1 : 0);
  w.string(c.traceState?.serialize() ?? "");
}

function readContext(r: ByteReader): ContextRecord {
  const c: ContextRecord = { traceId: r.string(), spanId: r.string(), traceFlags: r.u8() };
  if (r.u8() === 1) c.isRemote = true;
  const traceState = r.string();
  if (traceState) c.traceState = traceState;
  return c;
}

function writeScalar(w: ByteWriter, v: unknown): void {
  if (typeof v === "string") {
    w.u8(STRING);
    w.string(v);
  } else if (typeof v === "number") {
    w.u8(NUMBER);
    w.f64(v);
  } else if (typeof v === "boolean") {
    w.u8(BOOLEAN);
    w.u8(v ? 1 : 0);
  } else {
    w.u8(NULL);
  }
}

function readScalar(r: ByteReader, tag: number): string | number | boolean | null {
  if (tag === STRING) return r.string();
  if (tag === NUMBER) return r.f64();
  if (tag === BOOLEAN) return r.u8() === 1;
  return null;
}

/**
 * Writes a finished span in SMMF's span encoding: ids, names, times, status and attributes field by field,
 * straight from the span (no intermediate record, no JSON on the serving thread); events and links, which
 * SMMF's own spans do not have, as JSON.
 */
export function encodeSpan(w: ByteWriter, span: FinishedSpan): void {
  writeContext(w, span.context);
  w.u8(span.parent ? 1 : 0);
  if (span.parent) writeContext(w, span.parent);
  w.string(span.name);
  w.u8(span.kind);
  w.f64(span.startMs);
  w.f64(span.durationMs);
  w.u8(span.status.code);
  w.string(span.status.message ?? "");
  let count = 0;
  for (const key in span.attributes) if (span.attributes[key] !== undefined) count++;
  w.u32(count);
  for (const key in span.attributes) {
    const value = span.attributes[key];
    if (value === undefined) continue;
    w.string(key);
    if (Array.isArray(value)) {
      w.u8(ARRAY);
      w.u32(value.length);
      for (const element of value) writeScalar(w, element);
    } else {
      writeScalar(w, value);
    }
  }
  w.u32(span.droppedAttributes);
  w.u32(span.droppedEvents);
  w.u32(span.droppedLinks);
  const rest = span.events || span.links ? toSpanRecord(span) : undefined;
  w.string(rest ? JSON.stringify({ events: rest.events, links: rest.links }) : "");
}

/** Reads a span `encodeSpan` wrote, as the record the exporter's side works with. */
export function decodeSpan(r: ByteReader): SpanRecord {
  const context = readContext(r);
  const parent = r.u8() === 1 ? readContext(r) : undefined;
  const name = r.string();
  const kind = r.u8();
  const startMs = r.f64();
  const durationMs = r.f64();
  const code = r.u8();
  const message = r.string();
  const attributes: Attributes = {};
  for (let n = r.u32(); n > 0; n--) {
    const key = r.string();
    const tag = r.u8();
    if (tag === ARRAY) {
      const values: unknown[] = [];
      for (let m = r.u32(); m > 0; m--) values.push(readScalar(r, r.u8()));
      attributes[key] = values as AttributeValue;
    } else {
      attributes[key] = readScalar(r, tag) as AttributeValue;
    }
  }
  const dropped: SpanRecord["dropped"] = [r.u32(), r.u32(), r.u32()];
  const rest = r.string();
  const { events, links } = rest ? (JSON.parse(rest) as Pick<SpanRecord, "events" | "links">) : { events: [], links: [] };
  return { context, parent, name, kind, ...spanTimes(startMs, durationMs), status: message ? { code, message } : { code }, attributes, events, links, dropped, scope: SCOPE };
}
