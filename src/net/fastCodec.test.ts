import { describe, expect, it } from "vitest";
import { create, fromBinary, toBinary, ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { file_smmf_v1_inference, GenerateRequestSchema, GenerateResponseSchema, GenerateDoneSchema, FinishReason, SamplingParamsSchema } from "../gen/smmf/v1/inference_pb.js";
import { InstanceSchema } from "../gen/smmf/v1/instance_pb.js";
import { fastCodec } from "./fastCodec.js";

/** A seeded random source, so that a failure can be reproduced. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TEXTS = ["", "a", "Hello, world", "héllo wörld ✓", "🦙 emoji", "x".repeat(200), "y".repeat(20_000), "\u0000nul"];

function scalarValue(rnd: () => number, scalar: ScalarType | undefined, isEnum: boolean): unknown {
  if (isEnum) return rnd() < 0.1 ? -1 : Math.floor(rnd() * 6);
  switch (scalar) {
    case ScalarType.STRING: return TEXTS[Math.floor(rnd() * TEXTS.length)];
    case ScalarType.BYTES: return Uint8Array.from({ length: Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256));
    case ScalarType.BOOL: return rnd() < 0.5;
    case ScalarType.INT32: return Math.floor((rnd() - 0.5) * 2 ** 32) | 0;
    case ScalarType.UINT32: return [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32 - 1][Math.floor(rnd() * 8)];
    case ScalarType.FLOAT: return Math.fround((rnd() - 0.5) * 1000);
    case ScalarType.DOUBLE: return (rnd() - 0.5) * 1e6;
    default: throw new Error(`no generator for ${scalar}`);
  }
}

/** A random message of `desc`: each field set or left alone, lists of 0–3 items, nesting up to `depth`. */
function randomMessage(desc: DescMessage, rnd: () => number, depth = 3): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  const value = (f: DescField): unknown => {
    if (f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message")) return randomMessage(f.message!, rnd, depth - 1);
    return scalarValue(rnd, f.scalar, f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum"));
  };
  for (const member of desc.members) {
    if (rnd() < 0.35) continue;
    if (member.kind === "oneof") {
      const f = member.fields[Math.floor(rnd() * member.fields.length)];
      if (f.fieldKind === "message" && depth <= 0) continue;
      init[member.localName] = { case: f.localName, value: value(f) };
    } else if (member.fieldKind === "list") {
      if (member.listKind === "message" && depth <= 0) continue;
      init[member.localName] = Array.from({ length: Math.floor(rnd() * 4) }, () => value(member));
    } else {
      if (member.fieldKind === "message" && depth <= 0) continue;
      init[member.localName] = value(member);
    }
  }
  return create(desc, init as never) as unknown as Record<string, unknown>;
}

describe("fastCodec", () => {
  const messages = file_smmf_v1_inference.messages;

  it("writes the same bytes as protobuf-es's toBinary, and reads the same messages as fromBinary, for every message of inference.proto", () => {
    const rnd = random(1);
    let cases = 0;
    for (const desc of messages) {
      const codec = fastCodec(desc);
      for (let i = 0; i < 60; i++) {
        const message = randomMessage(desc, rnd) as never;
        const expected = toBinary(desc, message);
        const bytes = codec.encode(message);
        expect(Buffer.from(bytes).equals(Buffer.from(expected)), `${desc.typeName} #${i}`).toBe(true);
        expect(codec.decode(expected)).toEqual(fromBinary(desc, expected));
        // What is read back is the message written.
        expect(codec.decode(bytes)).toEqual(fromBinary(desc, bytes));
        cases++;
      }
    }
    expect(cases).toBe(messages.length * 60);
  });

  it("frames a message for gRPC: flag 0, big-endian length, the message", () => {
    const codec = fastCodec(GenerateResponseSchema);
    const message = create(GenerateResponseSchema, { kind: { case: "delta", value: { pieces: ["Hel", "lo"], promptTokens: 7 } } });
    const frame = codec.encodeFrame(message);
    const body = toBinary(GenerateResponseSchema, message);
    expect(frame[0]).toBe(0);
    expect(frame.readUInt32BE(1)).toBe(body.length);
    expect(frame.subarray(5).equals(Buffer.from(body))).toBe(true);
    // The frame is its own copy: the next encode does not change it.
    codec.encode(create(GenerateResponseSchema, { kind: { case: "done", value: { instanceId: "zzzzzzzz" } } }));
    expect(frame.subarray(5).equals(Buffer.from(body))).toBe(true);
  });

  it("reads repeated scalars packed and unpacked, skips unknown fields, and keeps zero values of oneofs", () => {
    const codec = fastCodec(GenerateDoneSchema);
    const w = new BinaryWriter();
    w.tag(6, WireType.Varint).int32(FinishReason.LENGTH); // unpacked
    w.tag(6, WireType.LengthDelimited).fork().int32(FinishReason.STOP).int32(FinishReason.TOOL_CALLS).join(); // packed
    w.tag(99, WireType.LengthDelimited).string("from a newer peer");
    w.tag(98, WireType.Bit64).double(1.5);
    w.tag(97, WireType.Bit32).float(1.5);
    w.tag(96, WireType.Varint).uint64(2n ** 60n);
    w.tag(3, WireType.LengthDelimited).string("inst-1");
    const bytes = w.finish();
    const decoded = codec.decode(bytes);
    expect(decoded.choiceFinishReasons).toEqual([FinishReason.LENGTH, FinishReason.STOP, FinishReason.TOOL_CALLS]);
    expect(decoded.instanceId).toBe("inst-1");
    expect(decoded).toEqual({ ...fromBinary(GenerateDoneSchema, bytes), $unknown: undefined });

    const start = fastCodec(GenerateRequestSchema);
    const empty = create(GenerateRequestSchema, { kind: { case: "start", value: { input: { case: "prompt", value: "" } } } });
    expect(start.decode(start.encode(empty))).toEqual(fromBinary(GenerateRequestSchema, toBinary(GenerateRequestSchema, empty)));
    expect(start.decode(start.encode(empty)).kind).toMatchObject({ case: "start", value: { input: { case: "prompt", value: "" } } });
  });

  it("keeps proto3 optional fields absent, and present when zero", () => {
    const codec = fastCodec(SamplingParamsSchema);
    expect(codec.decode(codec.encode(create(SamplingParamsSchema, {})))).not.toHaveProperty("maxTokens");
    const zero = codec.decode(codec.encode(create(SamplingParamsSchema, { maxTokens: 0, temperature: 0 })));
    expect(zero.maxTokens).toBe(0);
    expect(zero.temperature).toBe(0);
  });

  it("refuses malformed input with an error", () => {
    const codec = fastCodec(GenerateResponseSchema);
    const bytes = codec.encode(create(GenerateResponseSchema, { kind: { case: "delta", value: { pieces: ["a piece of text"], promptTokens: 300 } } }));
    for (let cut = 1; cut < bytes.length; cut++) expect(() => codec.decode(bytes.subarray(0, cut)), `cut at ${cut}`).toThrow();
    // A field with a wire type it cannot have.
    expect(() => codec.decode(Uint8Array.of((1 << 3) | WireType.Varint, 1))).toThrow(/wire type/);
    // A varint that never ends.
    expect(() => codec.decode(Uint8Array.of(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01))).toThrow();
  });

  it("refuses to make a codec for what it does not support (maps, 64-bit integers), so a contract change cannot slip past it", () => {
    expect(() => fastCodec(InstanceSchema)).toThrow(/fastCodec/);
  });
});
