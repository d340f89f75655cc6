import type { Prng } from "./prng.js";

/** Hostile JSON values and text, and mutations of JSON documents. */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const UNICODE = ["\u0000", "\ud800", "\udfff", "\u202e", "\ufeff", "é", "😀", "\u{10ffff}", "\n", "\r\n", "\t", "\\", '"', "%00", "%ff", "../", "${jndi:ldap://x}", "<script>", "'; DROP TABLE requests; --", "{{7*7}}"];

/** A string meant to break something: long, odd characters, lone surrogates, format strings. */
export function hostileString(r: Prng): string {
  switch (r.int(0, 9)) {
    case 0:
      return "";
    case 1:
      return r.pick(UNICODE);
    case 2:
      return r.pick(UNICODE).repeat(r.int(1, 200));
    case 3:
      return "x".repeat(r.pick([255, 256, 257, 511, 512, 513, 1024, 4097, 10_000, 70_000]));
    case 4:
      return r.chars(r.int(1, 40), "abc \u0000\u0001\u007f\u0085\u2028\u2029😀\ud800é%/\\\"'");
    case 5:
      return r.pick(["stories260K", "STORIES260K", "stories260K ", " stories260K", "stories260K\u0000", "stories260k", "../stories260K", "stories260K/..", "*", "%", "__proto__", "constructor", "toString", "hasOwnProperty"]);
    case 6:
      return r.pick(["%s%s%s%n", "%x%x", "\u001b[2J", "\r\nX-Injected: 1", "a\r\n\r\nGET / HTTP/1.1", "null", "undefined", "NaN", "-0", "1e309"]);
    case 7:
      return r.chars(r.int(0, 12));
    default:
      return r.chars(r.int(1, 6)) + r.pick(UNICODE) + r.chars(r.int(0, 6));
  }
}

export function hostileNumber(r: Prng): number {
  return r.pick([0, -0, 1, -1, 2, 0.5, 1.5, -2.5, 3, 4, 5, 16, 17, 100, 255, 256, 1e3, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e21, 1e308, -1e308, Number.MIN_VALUE, 4294967296.5, 1e-7]);
}

/** Any JSON value of a hostile kind, at most `depth` levels deep. */
export function hostileValue(r: Prng, depth = 2): Json {
  switch (r.int(0, 9)) {
    case 0:
      return null;
    case 1:
      return r.bool();
    case 2:
    case 3:
      return hostileNumber(r);
    case 4:
    case 5:
      return hostileString(r);
    case 6:
      if (depth <= 0) return [];
      return Array.from({ length: r.pick([0, 1, 2, 5, 17]) }, () => hostileValue(r, depth - 1));
    case 7:
      if (depth <= 0) return {};
      return Object.fromEntries(Array.from({ length: r.int(0, 3) }, () => [r.pick(["__proto__", "constructor", "type", "text", "role", "content", r.chars(3)]), hostileValue(r, depth - 1)]));
    case 8:
      return nested(r.int(2, 70));
    default:
      return Array.from({ length: r.pick([100, 1000, 3000]) }, (_, i) => (r.bool() ? i : "s"));
  }
}

/** Arrays nested `depth` deep (past 64 is the listener's JSON depth cap). */
export function nested(depth: number): Json {
  let v: Json = [];
  for (let i = 1; i < depth; i++) v = [v];
  return v;
}

/** Replaces, removes or adds fields of `doc` (a copy) and its nested objects and arrays. */
export function mutateJson(r: Prng, doc: Json, fields: readonly string[], times: number): Json {
  const copy = JSON.parse(JSON.stringify(doc)) as Json;
  for (let i = 0; i < times; i++) {
    mutateOnce(r, copy, fields);
    // Copies of copies could grow without bound: stop at about 3 MB (past the body limit, cheap to send).
    if (JSON.stringify(copy).length > 3_000_000) break;
  }
  return copy;
}

function containers(v: Json, out: (Json[] | { [key: string]: Json })[] = []): (Json[] | { [key: string]: Json })[] {
  if (v !== null && typeof v === "object") {
    out.push(v);
    for (const child of Array.isArray(v) ? v : Object.values(v)) containers(child, out);
  }
  return out;
}

function mutateOnce(r: Prng, doc: Json, fields: readonly string[]): void {
  const all = containers(doc);
  if (all.length === 0) return;
  const target = r.pick(all);
  if (Array.isArray(target)) {
    const op = r.int(0, 3);
    if (op === 0 && target.length > 0) target[r.int(0, target.length - 1)] = hostileValue(r);
    else if (op === 1) target.push(hostileValue(r));
    else if (op === 2 && target.length > 0) target.splice(r.int(0, target.length - 1), 1);
    else if (target.length > 0) {
      const item = target[0];
      // Copies up to about 2 MB of JSON: past the body limit sometimes, never a client out of memory.
      const size = JSON.stringify(item)?.length ?? 4;
      const copies = Math.min(r.pick([3, 10, 100, 2049, 5000]), Math.floor(2_000_000 / Math.max(1, size)));
      // Deep copies: an alias mutated later would grow every copy at once.
      for (let i = 0; i < copies && target.length < 6000; i++) target.push(structuredClone(item));
    }
    return;
  }
  const keys = Object.keys(target);
  const op = r.int(0, 4);
  if (op <= 1) target[keys.length > 0 && r.bool(0.7) ? r.pick(keys) : r.pick(fields)] = hostileValue(r);
  else if (op === 2 && keys.length > 0) delete target[r.pick(keys)];
  else if (op === 3) target[r.pick(fields)] = hostileValue(r);
  else target[hostileString(r).slice(0, 64) || "k"] = hostileValue(r, 1);
}

/** JSON text broken on purpose (or an odd but valid encoding of `doc`). */
export function breakJsonText(r: Prng, doc: Json): Buffer {
  const text = JSON.stringify(doc);
  switch (r.int(0, 13)) {
    case 0:
      return Buffer.from(text.slice(0, r.int(0, Math.max(0, text.length - 1))));
    case 1:
      return Buffer.concat([Buffer.from(text.slice(0, text.length >> 1)), r.bytes(r.int(1, 8)), Buffer.from(text.slice(text.length >> 1))]);
    case 2:
      return Buffer.from(`\ufeff${text}`);
    case 3:
      return Buffer.from(text.replace(/}$/, ',}'));
    case 4:
      return Buffer.from(text.replace(/^{/, '{"model":"a","model":"b",'));
    case 5:
      return Buffer.from(r.pick(["", " ", "null", "[]", "0", '"x"', "true", "{", "}", "[{}]", "{}", "{\"a\":}", "\u0000", "NaN", "{\"model\":1e999}"]));
    case 6:
      return Buffer.concat([Buffer.from(text.slice(0, -1)), Buffer.from([0xff, 0xfe, 0xc0, 0x80]), Buffer.from("}")]);
    case 7:
      return Buffer.from(`${"[".repeat(r.int(60, 5000))}${"]".repeat(r.int(0, 70))}`);
    case 8:
      return Buffer.from(text.replace(/^{/, `{"pad":"${"1".repeat(r.int(1, 4000))}",`));
    case 9:
      return Buffer.from(`${"{\"a\":".repeat(r.int(60, 3000))}1${"}".repeat(r.int(0, 80))}`);
    case 10:
      return Buffer.from(text.replace(/:\s*(\d+)/, `:${"9".repeat(r.int(20, 400))}`));
    case 11:
      return Buffer.from(`${text}${r.pick(["garbage", "\n{}", "\u0000", " ", "]"])}`);
    case 12:
      return Buffer.from(text, "utf16le");
    default:
      return r.bytes(r.int(0, 64));
  }
}
