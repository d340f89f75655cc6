import { describe, expect, it } from "vitest";
import { ResponseStore } from "./ResponseStore.js";

const entry = (owner = "", text = "x") => ({ response: { text }, conversation: [{ role: "user", content: text }], owner });

describe("ResponseStore", () => {
  it("keeps a response for its owner only", () => {
    const store = new ResponseStore();
    store.put("a", entry("key-1"));
    expect(store.get("a", "key-1")?.response).toEqual({ text: "x" });
    expect(store.get("a", "key-2")).toBeUndefined();
    expect(store.get("a", "")).toBeUndefined();
  });

  it("keeps at most maxResponses, dropping the oldest", () => {
    const store = new ResponseStore({ maxResponses: 2, maxChars: 1e9, ttlMs: 1e9 });
    store.put("a", entry());
    store.put("b", entry());
    store.put("c", entry());
    expect([store.get("a", ""), store.get("b", ""), store.get("c", "")].map((e) => e !== undefined)).toEqual([false, true, true]);
    expect(store.size).toBe(2);
  });

  it("keeps at most maxChars over all responses, and does not keep one larger than that", () => {
    const store = new ResponseStore({ maxResponses: 100, maxChars: 300, ttlMs: 1e9 });
    store.put("a", entry("", "a".repeat(100)));
    store.put("b", entry("", "b".repeat(100)));
    expect(store.get("a", "")).toBeUndefined();
    expect(store.get("b", "")).toBeDefined();
    store.put("huge", entry("", "h".repeat(1000)));
    expect(store.get("huge", "")).toBeUndefined();
    expect(store.get("b", "")).toBeDefined();
  });

  it("forgets a response after ttlMs", () => {
    let now = 0;
    const store = new ResponseStore({ maxResponses: 100, maxChars: 1e9, ttlMs: 1_000 }, () => now);
    store.put("a", entry());
    now = 999;
    expect(store.get("a", "")).toBeDefined();
    now = 1_001;
    expect(store.get("a", "")).toBeUndefined();
    expect(store.size).toBe(0);
  });
});
