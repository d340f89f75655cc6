import { describe, expect, it } from "vitest";
import { commonPrefixLength, continueHeldTokens, slotPreference, type TokenText } from "./prefixMatch.js";

// A toy vocabulary: token = index into PIECES; 0 is special (a control token).
const PIECES = ["<ctl>", " he", "he", "llo", "l", "lo", " w", "orld", " hello", "!", "\n", "o"];
const text: TokenText = {
  bytes: (t) => Array.from(new TextEncoder().encode(PIECES[t])),
  isSpecial: (t) => t === 0,
};
const tok = (...pieces: string[]) => pieces.map((p) => {
  const i = PIECES.indexOf(p);
  if (i < 0) throw new Error(p);
  return i;
});

describe("slotPreference", () => {
  it("prefers a sequence the request continues, or one holding most of the prompt; else none", () => {
    expect(slotPreference(0, 0, 100)).toBe(0);
    // The next turn of its conversation: reuses all it holds.
    expect(slotPreference(100, 100, 180)).toBe(100);
    // Another conversation sharing only the template's first tokens: not worth erasing its cache.
    expect(slotPreference(300, 18, 120)).toBe(0);
    // A long shared system prompt: most of this prompt.
    expect(slotPreference(1200, 1000, 1100)).toBe(1000);
  });
});

describe("continueHeldTokens", () => {
  it("keeps a held answer spelled with other tokens in the prompt, and the prompt's own rest", () => {
    // Held: prompt [<ctl>, "\n"] then the answer as generated: " he" "l" "lo" (" hello" read back).
    const held = tok("<ctl>", "\n", " he", "l", "lo");
    const prompt = tok("<ctl>", "\n", " hello", "!", "\n");
    expect(commonPrefixLength(held, prompt)).toBe(2);
    expect(continueHeldTokens(held, prompt, text)).toEqual([...held, ...tok("!", "\n")]);
  });

  it("keeps the longest run that ends on a boundary on both sides", () => {
    // Held " he" "llo" " w" "orld"; the prompt spells " hello" then " w" "o" ...: " hello" matches, " w" too,
    // "orld" vs "o": the held tail stops after " w".
    const held = tok("\n", " he", "llo", " w", "orld");
    const prompt = tok("\n", " hello", " w", "o", "!");
    expect(continueHeldTokens(held, prompt, text)).toEqual([...tok("\n", " he", "llo", " w"), ...tok("o", "!")]);
  });

  it("gives nothing when the texts differ, a control token is involved, or no prompt token would follow", () => {
    expect(continueHeldTokens(tok("\n", "he", "llo"), tok("\n", " hello", "!"), text)).toBeUndefined();
    expect(continueHeldTokens(tok("\n", " he", "<ctl>"), tok("\n", " he", "l", "!"), text)).toBeUndefined();
    expect(continueHeldTokens(tok("\n", " he", "llo"), tok("\n", " hello"), text)).toBeUndefined();
    // Nothing in common, or nothing held past the common part.
    expect(continueHeldTokens(tok(" he"), tok("\n", "!"), text)).toBeUndefined();
    expect(continueHeldTokens(tok("\n", "!"), tok("\n", "!", "\n"), text)).toBeUndefined();
  });
});
