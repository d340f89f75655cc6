/**
 * How much a free sequence is worth to a request, for choosing one: the tokens it would reuse (`common`, the
 * length of the common prefix of what it holds and the prompt), but only when that reuse is most of what the
 * sequence holds (the request continues it: the next turn of its conversation, the same prompt again) or most
 * of the prompt (a long shared system prompt); else 0, and the least recently used sequence is taken. Without
 * the rule, a new conversation would take the sequence of another that shares only the template's first
 * tokens with it, and erase that conversation's cache for a reuse of a dozen tokens.
 */
export function slotPreference(held: number, common: number, promptLength: number): number {
  if (held === 0 || common === 0) return 0;
  return common * 2 >= held || common * 2 >= promptLength ? common : 0;
}

/** The longest common prefix of two token lists. */
export function commonPrefixLength(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

export interface TokenText {
  /** The bytes a token stands for (its piece, as in the vocabulary: the same in any context). */
  bytes(token: number): readonly number[];
  isSpecial(token: number): boolean;
}

/** Tokens of a held tail looked at, at most. */
const MAX_TAIL = 4096;

/**
 * A sequence that holds a previous answer as the model generated it (its own tokens) sees the next turn's
 * prompt spell that answer with other tokens when the text tokenizes differently read back (not every
 * generated token sequence is the tokenizer's own choice for its text). Past the common prefix, this finds
 * the longest run of the held tokens whose bytes are exactly those of a run of the prompt's tokens at that
 * point, both ending on a token boundary (plain tokens on both sides: no special tokens, so nothing the user
 * typed can stand in for a control token). The prompt is then the held tokens up to there followed by the
 * rest of its own: the same text, and the held tokens need no evaluation. Returns undefined when no held
 * token can be kept that way, or no prompt token would follow.
 */
export function continueHeldTokens(held: readonly number[], prompt: readonly number[], text: TokenText): number[] | undefined {
  const common = commonPrefixLength(held, prompt);
  if (common === 0 || common >= held.length || common >= prompt.length) return undefined;
  // Held side: its bytes, and after how many of its tokens each byte length is reached.
  const heldBytes: number[] = [];
  const heldBoundary = new Map<number, number>();
  for (let i = common; i < held.length && i - common < MAX_TAIL; i++) {
    if (text.isSpecial(held[i])) break;
    for (const b of text.bytes(held[i])) heldBytes.push(b);
    heldBoundary.set(heldBytes.length, i + 1);
  }
  // Prompt side: walk its tokens while their bytes agree; the last shared boundary wins.
  let at = 0;
  let best: { heldEnd: number; promptEnd: number } | undefined;
  for (let j = common; j < prompt.length - 1; j++) {
    if (text.isSpecial(prompt[j])) break;
    const bytes = text.bytes(prompt[j]);
    let k = 0;
    while (k < bytes.length && at < heldBytes.length && bytes[k] === heldBytes[at]) [k, at] = [k + 1, at + 1];
    if (k < bytes.length) break;
    const heldEnd = heldBoundary.get(at);
    if (heldEnd !== undefined) best = { heldEnd, promptEnd: j + 1 };
    if (at >= heldBytes.length) break;
  }
  if (!best || best.heldEnd === common) return undefined;
  return [...held.slice(0, best.heldEnd), ...prompt.slice(best.promptEnd)];
}
