/** Released output: text and the number of generated tokens it stands for. */
export interface Release {
  text: string;
  tokenCount: number;
}

/**
 * Finds stop strings in streamed output, token by token. Text that might be the start of a stop string is
 * held back (whole tokens); once it cannot be, it is released, and at the end everything held is released.
 * When a stop string appears, the text before it is released, the rest is dropped, and the tokens are still
 * counted (as empty releases), so that the released token counts always add up to the generated tokens.
 */
export class StopMatcher {
  private held: Release[] = [];
  private heldText = "";
  private stopped = false;
  /** The stop string that ended the output (the first one in the text). */
  matched: string | undefined;

  constructor(private readonly stops: readonly string[]) {}

  get hasStopped(): boolean {
    return this.stopped;
  }

  /** Adds the text of newly generated tokens; returns what can be released now. */
  push(text: string, tokenCount: number): Release[] {
    if (this.stopped) return [{ text: "", tokenCount }];
    if (this.stops.length === 0) return [{ text, tokenCount }];
    this.held.push({ text, tokenCount });
    this.heldText += text;
    let stopAt = -1;
    for (const stop of this.stops) {
      const i = this.heldText.indexOf(stop);
      if (i >= 0 && (stopAt < 0 || i < stopAt)) {
        stopAt = i;
        this.matched = stop;
      }
    }
    if (stopAt >= 0) {
      this.stopped = true;
      return this.releaseUpTo(stopAt, true);
    }
    return this.releaseUpTo(this.heldText.length - this.longestStopPrefixSuffix(), false);
  }

  /** Everything still held (at the end of generation, when no stop string came). */
  flush(): Release[] {
    const out = this.stopped ? this.held.map((h) => ({ text: "", tokenCount: h.tokenCount })) : this.held;
    this.held = [];
    this.heldText = "";
    return out;
  }

  /** Length of the longest suffix of the held text that is a proper prefix of a stop string. */
  private longestStopPrefixSuffix(): number {
    let best = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, this.heldText.length); n > best; n--) {
        if (this.heldText.endsWith(stop.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }

  /**
   * Releases held tokens whose text ends at or before `end`. With `cut` (a stop string starts at `end`), the
   * token that crosses `end` is released with the text before it, and every later token as empty text.
   */
  private releaseUpTo(end: number, cut: boolean): Release[] {
    const out: Release[] = [];
    let offset = 0;
    let i = 0;
    for (; i < this.held.length; i++) {
      const h = this.held[i];
      if (offset + h.text.length <= end) {
        out.push(h);
        offset += h.text.length;
        continue;
      }
      if (!cut) break;
      out.push({ text: h.text.slice(0, Math.max(0, end - offset)), tokenCount: h.tokenCount });
      offset += h.text.length;
      for (i++; i < this.held.length; i++) out.push({ text: "", tokenCount: this.held[i].tokenCount });
      break;
    }
    this.held = cut ? [] : this.held.slice(i);
    this.heldText = cut ? "" : this.heldText.slice(offset);
    return out;
  }
}
