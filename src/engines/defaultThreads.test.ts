import { describe, it, expect } from "vitest";
import { availableParallelism } from "node:os";
import { defaultThreads } from "./defaultThreads.js";

describe("defaultThreads", () => {
  it("uses 1 thread on 2 cores or fewer", () => {
    expect(defaultThreads(1)).toBe(1);
    expect(defaultThreads(2)).toBe(1);
  });

  it("uses half the cores above 2, rounding down", () => {
    expect(defaultThreads(3)).toBe(1);
    expect(defaultThreads(4)).toBe(2);
    expect(defaultThreads(5)).toBe(2);
    expect(defaultThreads(8)).toBe(4);
    expect(defaultThreads(31)).toBe(15);
    expect(defaultThreads(32)).toBe(16);
  });

  it("caps at 16", () => {
    expect(defaultThreads(33)).toBe(16);
    expect(defaultThreads(64)).toBe(16);
    expect(defaultThreads(256)).toBe(16);
  });

  it("defaults to this machine's cores", () => {
    expect(defaultThreads()).toBe(defaultThreads(availableParallelism()));
  });
});
