import { describe, expect, it } from "vitest";
import { slotPreference } from "./slotPreference.js";

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
