import { ScalarType, type DescField, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

/**
 * Binary protobuf for the messages of the request path (Generate's requests and responses), without
 * protobuf-es's reflection: `toBinary`/`fromBinary` build a reflection object, two Maps and a sorted copy of the
 * fields for every message they touch, ~45 KB allocated per relayed request between gateway and worker
 * (heap profile of `npm run bench:gateway`, split layout). This codec walks a plan made once per message type.
 *
 * Same bytes as `toBinary` (fields in number order, packed repeated scalars, implicit-presence zero values
 * left out), and the same messages as `fromBinary` (plain objects with `$typeName`, zero values set, explicit
 * presence fields left absent, both packed and unpacked repeated scalars read). Unknown fields are skipped when
 * read and not written. Supports proto3 messages of the scalar types SMMF's contracts use (string, bytes, bool,
 * int32, uint32, float, double, enums), lists, nested messages and oneofs: making a codec for anything else
 * (maps, 64-bit integers, groups, proto2 defaults) throws, so that a contract change cannot pass unnoticed.
 * Conformance with protobuf-es is tested over every message of inference.proto (fastCodec.test.ts).
 */
export interface MessageCodec<T> {
  encode(message: T): Uint8Array;
  /** The message as gRPC frames it: a flag byte (0), its length (4 bytes, big-endian), the message. */
  encodeFrame(message: T): Buffer;
  /** Throws on malformed input (truncated, a length past the end, a wire type the field cannot have). */
  decode(bytes: Uint8Array): T;
}

const enum Wire {
  Varint = 0,
  Bit64 = 1,
  Delimited = 2,
  Bit32 = 5,
}

type Kind = "string" | "bytes" | "bool" | "int32" | "uint32" | "float" | "double" | "message";

interface FieldPlan {
  number: number;
  name: string;
  kind: Kind;
  /** The oneof's local name, for a oneof member. */
  oneof?: string;
  list: boolean;
  /** A repeated scalar written packed. */
  packed: boolean;
  /** Explicit presence (proto3 `optional`, messages): written when not undefined, even if zero. */
  explicit: boolean;
  tag: number;
  message?: MessagePlan;
}

interface MessagePlan {
  typeName: string;
  /** In field number order, as toBinary writes them. */
  fields: FieldPlan[];
  byNumber: Map<number, FieldPlan>;
  /** Zero values of the message: [local name, kind of zero] in member order. */
  zero: [string, "list" | "oneof" | Kind][];
}

function kindOf(field: DescField, scalar: ScalarType | undefined, isEnum: boolean): Kind {
  if (isEnum) return "int32";
  switch (scalar) {
    case ScalarType.STRING: return "string";
    case ScalarType.BYTES: return "bytes";
    case ScalarType.BOOL: return "bool";
    case ScalarType.INT32: return "int32";
    case ScalarType.UINT32: return "uint32";
    case ScalarType.FLOAT: return "float";
    case ScalarType.DOUBLE: return "double";
    default: throw new Error(`fastCodec: ${field.toString()} has a scalar type it does not support (${String(scalar)})`);
  }
}

function wireOf(kind: Kind): Wire {
  switch (kind) {
    case "string": case "bytes": case "message": return Wire.Delimited;
    case "float": return Wire.Bit32;
    case "double": return Wire.Bit64;
    default: return Wire.Varint;
  }
}

const plans = new Map<string, MessagePlan>();

function planOf(desc: DescMessage): MessagePlan {
  const known = plans.get(desc.typeName);
  if (known) return known;
  if (desc.file.edition !== 999 /* EDITION_PROTO3 */) throw new Error(`fastCodec: ${desc.typeName} is not proto3`);
  if (desc.typeName.startsWith("google.protobuf.")) throw new Error(`fastCodec: well-known type ${desc.typeName} is not supported`);
  const plan: MessagePlan = { typeName: desc.typeName, fields: [], byNumber: new Map(), zero: [] };
  plans.set(desc.typeName, plan); // before the fields: messages may contain themselves
  for (const field of desc.fields) {
    if (field.fieldKind === "map") throw new Error(`fastCodec: map field ${field.toString()} is not supported`);
    if ((field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message")) && field.delimitedEncoding) throw new Error(`fastCodec: group ${field.toString()} is not supported`);
    const list = field.fieldKind === "list";
    const isMessage = field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message");
    const isEnum = field.fieldKind === "enum" || (field.fieldKind === "list" && field.listKind === "enum");
    const kind: Kind = isMessage ? "message" : kindOf(field, field.scalar, isEnum);
    const packed = list && field.packed && kind !== "string" && kind !== "bytes" && kind !== "message";
    const f: FieldPlan = {
      number: field.number,
      name: field.localName,
      kind,
      oneof: field.oneof?.localName,
      list,
      packed,
      explicit: !list && (field.oneof !== undefined || field.presence !== 2 /* IMPLICIT */ || isMessage),
      tag: (field.number << 3) | (packed ? Wire.Delimited : wireOf(kind)),
    };
    if (isMessage) f.message = planOf(field.message!);
    plan.fields.push(f);
    plan.byNumber.set(f.number, f);
  }
  plan.fields.sort((a, b) => a.number - b.number);
  for (const member of desc.members) {
    if (member.kind === "oneof") plan.zero.push([member.localName, "oneof"]);
    else if (member.fieldKind === "list") plan.zero.push([member.localName, "list"]);
    else if (member.presence === 2 && member.fieldKind !== "message") plan.zero.push([member.localName, plan.byNumber.get(member.number)!.kind]);
  }
  return plan;
}

// ---- writing: one growing scratch buffer, reused by every encode (encoding is synchronous) ----

let buf = Buffer.allocUnsafe(64 * 1024);
let pos = 0;

function reserve(n: number): void {
  if (pos + n <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + n) size *= 2;
  const bigger = Buffer.allocUnsafe(size);
  buf.copy(bigger, 0, 0, pos);
  buf = bigger;
}

function varint(v: number): void {
  reserve(10);
  if (v < 0) {
    // A negative int32 (or enum) is sign-extended to 64 bits: ten bytes.
    let lo = v >>> 0;
    let hi = 0xffffffff;
    for (let i = 0; i < 4; i++) {
      buf[pos++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    buf[pos++] = (lo & 0x0f) | ((hi & 0x07) << 4) | 0x80;
    hi >>>= 3;
    for (let i = 0; i < 4; i++) {
      buf[pos++] = (hi & 0x7f) | 0x80;
      hi >>>= 7;
    }
    buf[pos++] = hi;
    return;
  }
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
}

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Writes a length-delimited part: `body` writes it after a one-byte length, moved on when the length is longer. */
function delimited(start: number): void {
  const length = pos - start - 1;
  const size = varintSize(length);
  if (size > 1) {
    reserve(size - 1);
    buf.copyWithin(start + size, start + 1, pos);
    pos += size - 1;
  }
  let p = start;
  let v = length;
  while (v > 0x7f) {
    buf[p++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[p] = v;
}

function scalar(kind: Kind, value: unknown): void {
  switch (kind) {
    case "string": {
      const s = value as string;
      reserve(5 + s.length * 3);
      const start = pos++;
      pos += buf.write(s, pos, "utf8");
      delimited(start);
      return;
    }
    case "bytes": {
      const b = value as Uint8Array;
      varint(b.length);
      reserve(b.length);
      buf.set(b, pos);
      pos += b.length;
      return;
    }
    case "bool": reserve(1); buf[pos++] = value ? 1 : 0; return;
    case "int32": varint((value as number) | 0); return;
    case "uint32": varint((value as number) >>> 0); return;
    case "float": reserve(4); buf.writeFloatLE(value as number, pos); pos += 4; return;
    case "double": reserve(8); buf.writeDoubleLE(value as number, pos); pos += 8; return;
    default: throw new Error("fastCodec: not a scalar");
  }
}

function isZero(kind: Kind, value: unknown): boolean {
  switch (kind) {
    case "string": return (value as string).length === 0;
    case "bytes": return (value as Uint8Array).length === 0;
    case "bool": return value === false;
    default: return value === 0;
  }
}

function writeMessage(plan: MessagePlan, message: Record<string, unknown>): void {
  const fields = plan.fields;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    let value: unknown;
    if (f.oneof !== undefined) {
      const o = message[f.oneof] as { case?: string; value?: unknown };
      if (o.case !== f.name) continue;
      value = o.value;
    } else value = message[f.name];
    if (f.list) {
      const items = value as unknown[];
      if (items.length === 0) continue;
      if (f.packed) {
        varint(f.tag);
        reserve(1);
        const start = pos++;
        for (let j = 0; j < items.length; j++) scalar(f.kind, items[j]);
        delimited(start);
      } else {
        for (let j = 0; j < items.length; j++) {
          varint(f.tag);
          writeValue(f, items[j]);
        }
      }
      continue;
    }
    if (f.explicit ? value === undefined : isZero(f.kind, value)) continue;
    varint(f.tag);
    writeValue(f, value);
  }
}

function writeValue(f: FieldPlan, value: unknown): void {
  if (f.kind !== "message") return scalar(f.kind, value);
  reserve(1);
  const start = pos++;
  writeMessage(f.message!, value as Record<string, unknown>);
  delimited(start);
}

// ---- reading ----

class Reader {
  pos: number;
  constructor(
    readonly bytes: Uint8Array,
    readonly view: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** A varint's low 32 bits (as an unsigned number; `| 0` makes it signed). */
  varint(): number {
    let result = 0;
    let shift = 0;
    const bytes = this.bytes;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("premature EOF");
      const b = bytes[this.pos++];
      if (shift < 28) result |= (b & 0x7f) << shift;
      else if (shift === 28) result |= (b & 0x0f) << 28;
      shift += 7;
      if (b < 0x80) return result >>> 0;
    }
    throw new Error("invalid varint");
  }

  length(): number {
    const n = this.varint();
    if (n > this.end - this.pos) throw new Error("premature EOF");
    return n;
  }

  skip(wire: number): void {
    switch (wire) {
      case Wire.Varint: this.varint(); return;
      case Wire.Bit64: this.advance(8); return;
      case Wire.Delimited: {
        const n = this.length();
        this.pos += n;
        return;
      }
      case Wire.Bit32: this.advance(4); return;
      default: throw new Error(`cannot skip wire type ${wire}`);
    }
  }

  advance(n: number): number {
    const at = this.pos;
    if (n > this.end - at) throw new Error("premature EOF");
    this.pos = at + n;
    return at;
  }

  scalar(kind: Kind): unknown {
    switch (kind) {
      case "string": {
        const n = this.length();
        const at = this.pos;
        this.pos += n;
        return this.view.toString("utf8", at, at + n);
      }
      case "bytes": {
        const n = this.length();
        const at = this.pos;
        this.pos += n;
        return this.bytes.subarray(at, at + n);
      }
      case "bool": return this.varint() !== 0;
      case "int32": return this.varint() | 0;
      case "uint32": return this.varint();
      case "float": return this.view.readFloatLE(this.advance(4));
      case "double": return this.view.readDoubleLE(this.advance(8));
      default: throw new Error("fastCodec: not a scalar");
    }
  }
}

function zeroMessage(plan: MessagePlan): Record<string, unknown> {
  const m: Record<string, unknown> = { $typeName: plan.typeName };
  const zero = plan.zero;
  for (let i = 0; i < zero.length; i++) {
    const [name, kind] = zero[i];
    switch (kind) {
      case "list": m[name] = []; break;
      case "oneof": m[name] = { case: undefined }; break;
      case "string": m[name] = ""; break;
      case "bytes": m[name] = new Uint8Array(0); break;
      case "bool": m[name] = false; break;
      default: m[name] = 0;
    }
  }
  return m;
}

function readMessage(plan: MessagePlan, r: Reader, end: number): Record<string, unknown> {
  const m = zeroMessage(plan);
  while (r.pos < end) {
    const tag = r.varint();
    const number = tag >>> 3;
    const wire = tag & 7;
    const f = plan.byNumber.get(number);
    if (f === undefined) {
      r.skip(wire);
      continue;
    }
    if (f.list && wire === Wire.Delimited && f.kind !== "string" && f.kind !== "bytes" && f.kind !== "message") {
      // Packed.
      const stop = r.length() + r.pos;
      const items = m[f.name] as unknown[];
      while (r.pos < stop) items.push(r.scalar(f.kind));
      if (r.pos !== stop) throw new Error("packed field overruns its length");
      continue;
    }
    if (wire !== wireOf(f.kind)) throw new Error(`field ${plan.typeName}.${f.name} has wire type ${wire}`);
    let value: unknown;
    if (f.kind === "message") {
      const n = r.length();
      const stop = r.pos + n;
      // A message field given twice is merged, as protobuf-es does, for a singular field.
      const previous = !f.list ? (f.oneof !== undefined ? ((m[f.oneof] as { case?: string; value?: unknown }).case === f.name ? (m[f.oneof] as { value: unknown }).value : undefined) : m[f.name]) : undefined;
      value = previous !== undefined ? mergeInto(f.message!, previous as Record<string, unknown>, r, stop) : readMessage(f.message!, r, stop);
      r.pos = stop;
    } else value = r.scalar(f.kind);
    if (f.list) (m[f.name] as unknown[]).push(value);
    else if (f.oneof !== undefined) m[f.oneof] = { case: f.name, value };
    else m[f.name] = value;
  }
  if (r.pos !== end) throw new Error("message overruns its length");
  return m;
}

function mergeInto(plan: MessagePlan, target: Record<string, unknown>, r: Reader, end: number): Record<string, unknown> {
  const more = readMessage(plan, r, end);
  for (const f of plan.fields) {
    if (f.list) (target[f.name] as unknown[]).push(...(more[f.name] as unknown[]));
    else if (f.oneof !== undefined) {
      if ((more[f.oneof] as { case?: string }).case === f.name) target[f.oneof] = more[f.oneof];
    } else if (f.explicit ? more[f.name] !== undefined : !isZero(f.kind, more[f.name])) target[f.name] = more[f.name];
  }
  return target;
}

/** A codec for `schema`'s messages (see MessageCodec); throws when the message uses what it does not support. */
export function fastCodec<Desc extends DescMessage>(schema: Desc): MessageCodec<MessageShape<Desc>> {
  const plan = planOf(schema);
  const encodeAt = (message: MessageShape<Desc>, offset: number): void => {
    pos = offset;
    writeMessage(plan, message as unknown as Record<string, unknown>);
  };
  return {
    encode(message) {
      encodeAt(message, 0);
      return Uint8Array.prototype.slice.call(buf, 0, pos);
    },
    encodeFrame(message) {
      encodeAt(message, 5);
      const frame = Buffer.allocUnsafe(pos);
      buf.copy(frame, 0, 0, pos);
      frame[0] = 0;
      frame.writeUInt32BE(pos - 5, 1);
      return frame;
    },
    decode(bytes) {
      const view = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const r = new Reader(bytes, view, 0, bytes.length);
      return readMessage(plan, r, bytes.length) as MessageShape<Desc>;
    },
  };
}
