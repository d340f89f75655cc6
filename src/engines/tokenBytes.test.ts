import type { LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testModelPath } from "../../test/helpers/testModel.js";
import { getSharedLlama } from "./getSharedLlama.js";
import { tokenBytesOf } from "./tokenBytes.js";

const utf8 = (text: string) => Array.from(new TextEncoder().encode(text));
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

describe("tokenBytesOf, on the test model (SentencePiece with byte tokens)", () => {
  let model: LlamaModel;
  let bytesOf: (token: Token) => number[];
  let vocab: readonly string[];

  beforeAll(async () => {
    const llama = await getSharedLlama(1, false);
    model = await llama.loadModel({ modelPath: testModelPath() });
    bytesOf = tokenBytesOf(model);
    vocab = (model.fileInfo.metadata as unknown as { tokenizer: { ggml: { model: string; tokens: string[] } } }).tokenizer.ggml.tokens;
    expect((model.fileInfo.metadata as unknown as { tokenizer: { ggml: { model: string } } }).tokenizer.ggml.model).toBe("llama");
  });

  afterAll(async () => {
    await model?.dispose();
  });

  it("concatenating the tokens' bytes gives the exact UTF-8 of text with multi-byte characters", () => {
    for (const text of ["héllo 日本", "emoji 😀!", "naïve café — “quotes”", "a\nb\tc"]) {
      const tokens = model.tokenize(text);
      // SentencePiece puts a space before the first word ("▁" dummy prefix).
      expect(tokens.flatMap((t) => bytesOf(t))).toEqual(utf8(" " + text));
    }
  });

  it("a character spread over byte tokens has one byte per token, which no text alone can show", () => {
    const tokens = model.tokenize("日");
    const byteTokens = tokens.filter((t) => /^<0x[0-9A-F]{2}>$/i.test(vocab[t]));
    expect(byteTokens.map((t) => bytesOf(t))).toEqual(utf8("日").map((b) => [b]));
    for (const t of byteTokens) expect(() => strictUtf8.decode(Uint8Array.from(bytesOf(t)))).toThrow();
  });

  it("every byte token <0xNN> is exactly the byte NN", () => {
    let count = 0;
    vocab.forEach((piece, id) => {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
      if (!m) return;
      count++;
      expect(bytesOf(id as Token)).toEqual([parseInt(m[1], 16)]);
    });
    expect(count).toBe(256);
  });

  it("every other token's bytes are the UTF-8 of the text it adds after another token (▁ as a space)", () => {
    const prefix = model.tokenize("a");
    const before = model.detokenize(prefix, false);
    let checked = 0;
    for (let id = 0; id < vocab.length; id++) {
      const token = id as Token;
      if (/^<0x[0-9A-Fa-f]{2}>$/.test(vocab[id]) || model.tokenizer.isSpecialToken(token)) continue;
      const added = model.detokenize([...prefix, token], false).slice(before.length);
      expect(strictUtf8.decode(Uint8Array.from(bytesOf(token))), `token ${id} ${JSON.stringify(vocab[id])}`).toBe(added);
      checked++;
    }
    expect(checked).toBeGreaterThan(200);
    expect(bytesOf(model.tokenize(" the").at(-1)!)).toEqual(utf8(" the"));
  });

  it("special tokens (BOS, EOS) carry no text bytes", () => {
    expect(bytesOf(model.tokens.bos!)).toEqual([]);
    expect(bytesOf(model.tokens.eos!)).toEqual([]);
  });
});

/** A stand-in for a model with a byte-level BPE ("gpt2") vocabulary: only what tokenBytesOf reads. */
function fakeModel(kind: string, tokens: string[], special = new Set<number>(), texts: Record<number, string> = {}): LlamaModel {
  return {
    fileInfo: { metadata: { tokenizer: { ggml: { model: kind, tokens } } } },
    tokenizer: { isSpecialToken: (t: Token) => special.has(t) },
    detokenize: (ts: Token[]) => ts.map((t) => texts[t] ?? `[text of ${t}]`).join(""),
  } as unknown as LlamaModel;
}

describe("tokenBytesOf, byte-level BPE (gpt2) vocabularies", () => {
  it("maps GPT-2's printable stand-ins back to their bytes", () => {
    const bytesOf = tokenBytesOf(fakeModel("gpt2", ["Ġhello", "Ċ", "ĉ", "Ã©", "âĢĻ", "Ā", "ġ", "Ń", "abc!~", "¡¬®ÿ"]));
    expect(bytesOf(0 as Token)).toEqual(utf8(" hello"));
    expect(bytesOf(1 as Token)).toEqual([10]);
    expect(bytesOf(2 as Token)).toEqual([9]);
    expect(bytesOf(3 as Token)).toEqual(utf8("é"));
    expect(bytesOf(4 as Token)).toEqual(utf8("\u2019"));
    expect(bytesOf(5 as Token)).toEqual([0]);
    expect(bytesOf(6 as Token)).toEqual([127]);
    expect(bytesOf(7 as Token)).toEqual([173]);
    expect(bytesOf(8 as Token)).toEqual(utf8("abc!~"));
    expect(bytesOf(9 as Token)).toEqual([0xa1, 0xac, 0xae, 0xff]);
  });

  it("falls back to the token's text for special tokens and pieces outside the byte alphabet", () => {
    const bytesOf = tokenBytesOf(fakeModel("gpt2", ["<|endoftext|>", "日本"], new Set([0]), { 0: "", 1: "日本" }));
    expect(bytesOf(0 as Token)).toEqual([]);
    expect(bytesOf(1 as Token)).toEqual(utf8("日本"));
  });

  it("other tokenizers and ids outside the vocabulary use the UTF-8 of the token's text", () => {
    const bytesOf = tokenBytesOf(fakeModel("bert", ["##ing"], new Set(), { 0: "ing", 5: "é" }));
    expect(bytesOf(0 as Token)).toEqual(utf8("ing"));
    expect(bytesOf(5 as Token)).toEqual(utf8("é"));
  });
});
