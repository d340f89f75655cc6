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
