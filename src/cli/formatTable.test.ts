import { describe, expect, it } from "vitest";
import { formatTable } from "./formatTable.js";

describe("formatTable", () => {
  it("aligns columns to the widest cell, two spaces apart, ending with a newline", () => {
    const out = formatTable(["NAME", "READY", "SOURCE"], [
      ["qwen-7b", "2", "qwen.gguf"],
      ["a", "10", "/models/a.gguf"],
    ]);
    expect(out).toBe(["NAME     READY  SOURCE", "qwen-7b  2      qwen.gguf", "a        10     /models/a.gguf", ""].join("\n"));
  });

  it("widens a column to its header when the header is the longest", () => {
    expect(formatTable(["IN_FLIGHT", "X"], [["0", "y"]])).toBe("IN_FLIGHT  X\n0          y\n");
  });

  it("leaves no trailing spaces when the last cells are empty", () => {
    const out = formatTable(["A", "B", "C"], [["long-value", "", ""]]);
    expect(out).toBe("A           B  C\nlong-value\n");
    expect(out.split("\n").every((line) => line === line.trimEnd())).toBe(true);
  });

  it("prints just the header when there are no rows", () => {
    expect(formatTable(["NAME", "READY"], [])).toBe("NAME  READY\n");
  });
});
