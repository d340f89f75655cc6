import { describe, expect, it } from "vitest";
import { StopMatcher, type Release } from "./StopMatcher.js";

function run(stops: string[], tokens: string[]): { text: string; tokens: number; stopped: boolean; releases: Release[] } {
  const m = new StopMatcher(stops);
  const releases: Release[] = [];
  for (const t of tokens) {
    releases.push(...m.push(t, 1));
    if (m.hasStopped) break;
  }
  releases.push(...m.flush());
  return { text: releases.map((r) => r.text).join(""), tokens: releases.reduce((n, r) => n + r.tokenCount, 0), stopped: m.hasStopped, releases };
}

describe("StopMatcher", () => {
  it("passes everything through without stop strings", () => {
    expect(run([], ["a", "b"])).toMatchObject({ text: "ab", tokens: 2, stopped: false });
  });

  it("stops before a stop string and leaves it out, counting every token", () => {
    const r = run(["\n\n### User"], ["Hi", " there", "\n", "\n", "###", " User", " more"]);
    expect(r).toMatchObject({ text: "Hi there", tokens: 6, stopped: true });
  });

  it("releases held text when it turns out not to start a stop string", () => {
    const m = new StopMatcher(["\n\n### User"]);
    expect(m.push("Hi", 1)).toEqual([{ text: "Hi", tokenCount: 1 }]);
    expect(m.push("\n", 1)).toEqual([]);
    expect(m.push("\n", 1)).toEqual([]);
    expect(m.push("The", 1)).toEqual([
      { text: "\n", tokenCount: 1 },
      { text: "\n", tokenCount: 1 },
      { text: "The", tokenCount: 1 },
    ]);
  });

  it("releases what is held at the end when no stop string came (max_tokens reached)", () => {
    const r = run(["\n\n### User"], ["Hi", "\n"]);
    expect(r).toMatchObject({ text: "Hi\n", tokens: 2, stopped: false });
  });

  it("cuts a token that holds the start of a stop string, keeping the text before it", () => {
    const r = run(["."], ["Hello", " world.", " Next"]);
    expect(r).toMatchObject({ text: "Hello world", tokens: 2, stopped: true });
  });

  it("finds the earliest of several stop strings", () => {
    expect(run(["zz", "b"], ["a", "b", "zz"]).text).toBe("a");
  });

  it("counts tokens of one push together", () => {
    const r = run(["x"], ["é"].map((t) => t));
    expect(r.tokens).toBe(1);
    const m = new StopMatcher(["x"]);
    expect(m.push("é", 3)).toEqual([{ text: "é", tokenCount: 3 }]);
  });
});
