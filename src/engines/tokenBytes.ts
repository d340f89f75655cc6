import type { LlamaModel, Token } from "node-llama-cpp";

const encoder = new TextEncoder();

/** GPT-2's byte-level BPE shows each byte as a printable character; this maps them back. */
function gpt2ByteDecoder(): Map<string, number> {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const map = new Map<string, number>();
  for (const b of printable) map.set(String.fromCharCode(b), b);
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) map.set(String.fromCharCode(256 + extra++), b);
  return map;
}

/**
 * The exact bytes of each token (OpenAI's logprobs `bytes`): a token can be part of a character, whose text
 * alone shows only U+FFFD. Read from the GGUF vocabulary for SentencePiece ("llama") and byte-level BPE ("gpt2")
 * tokenizers; other tokenizers fall back to the UTF-8 of the token's text.
 */
export function tokenBytesOf(model: LlamaModel): (token: Token) => number[] {
  const ggml = (model.fileInfo.metadata as { tokenizer?: { ggml?: { model?: string; tokens?: readonly string[] } } }).tokenizer?.ggml;
  const vocab = ggml?.tokens;
  const kind = ggml?.model;
  const cache = new Map<Token, number[]>();
  const decoder = kind === "gpt2" ? gpt2ByteDecoder() : undefined;
  const fromText = (token: Token) => Array.from(encoder.encode(model.detokenize([token], false)));
  return (token) => {
    let bytes = cache.get(token);
    if (bytes) return bytes;
    const piece = vocab?.[token];
    if (piece === undefined || model.tokenizer.isSpecialToken(token)) bytes = fromText(token);
    else if (kind === "llama") {
      const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
      bytes = byte ? [parseInt(byte[1], 16)] : Array.from(encoder.encode(piece.replaceAll("\u2581", " ")));
    } else if (decoder) {
      bytes = [];
      for (const ch of piece) {
        const b = decoder.get(ch);
        if (b === undefined) {
          bytes = fromText(token);
          break;
        }
        bytes.push(b);
      }
    } else bytes = fromText(token);
    cache.set(token, bytes);
    return bytes;
  };
}
