import { describe, it, expect } from "vitest";
import { linkSignals } from "./linkSignals.js";

describe("linkSignals", () => {
  it("is not aborted while no input is", () => {
    const a = new AbortController();
    const linked = linkSignals(a.signal, undefined);
    expect(linked.signal.aborted).toBe(false);
  });

  it("aborts when any input aborts, with that reason", () => {
    const a = new AbortController();
    const b = new AbortController();
    const linked = linkSignals(a.signal, b.signal);
    const reason = new Error("b went away");
    b.abort(reason);
    expect(linked.signal.aborted).toBe(true);
    expect(linked.signal.reason).toBe(reason);
    expect(a.signal.aborted).toBe(false);
  });

  it("keeps the first reason when a second input aborts later", () => {
    const a = new AbortController();
    const b = new AbortController();
    const linked = linkSignals(a.signal, b.signal);
    a.abort("first");
    b.abort("second");
    expect(linked.signal.reason).toBe("first");
  });

  it("is aborted at once when an input is already aborted", () => {
    const a = new AbortController();
    const b = new AbortController();
    b.abort("already");
    const linked = linkSignals(a.signal, b.signal);
    expect(linked.signal.aborted).toBe(true);
    expect(linked.signal.reason).toBe("already");
  });

  it("can be aborted on its own without aborting the inputs", () => {
    const a = new AbortController();
    const linked = linkSignals(a.signal);
    linked.abort("own");
    expect(linked.signal.aborted).toBe(true);
    expect(a.signal.aborted).toBe(false);
    a.abort("later");
    expect(linked.signal.reason).toBe("own");
  });

  it("with no signals is a plain controller", () => {
    const linked = linkSignals();
    expect(linked.signal.aborted).toBe(false);
    linked.abort();
    expect(linked.signal.aborted).toBe(true);
  });

  it("fires abort listeners on the linked signal", () => {
    const a = new AbortController();
    const linked = linkSignals(undefined, a.signal);
    let fired = 0;
    linked.signal.addEventListener("abort", () => fired++);
    a.abort();
    expect(fired).toBe(1);
  });
});

describe("linkSignals: unlink", () => {
  it("stops following the inputs without aborting: no event, no reason", () => {
    const a = new AbortController();
    const linked = linkSignals(a.signal);
    let fired = 0;
    linked.signal.addEventListener("abort", () => fired++);
    linked.unlink();
    a.abort("later");
    expect(linked.signal.aborted).toBe(false);
    expect(linked.signal.reason).toBeUndefined();
    expect(fired).toBe(0);
  });

  it("leaves no listener on a long-lived input after many linked calls end, normally or not", () => {
    const input = new AbortController();
    let added = 0;
    let removed = 0;
    const add = input.signal.addEventListener.bind(input.signal);
    const remove = input.signal.removeEventListener.bind(input.signal);
    input.signal.addEventListener = ((...args: Parameters<typeof add>) => (added++, add(...args))) as typeof add;
    input.signal.removeEventListener = ((...args: Parameters<typeof remove>) => (removed++, remove(...args))) as typeof remove;
    for (let i = 0; i < 100; i++) {
      const linked = linkSignals(input.signal);
      if (i % 2) linked.unlink();
      else linked.abort("own");
    }
    expect(added).toBe(100);
    expect(removed).toBe(100);
    // The input still aborts cleanly, and a call linked now follows it.
    const last = linkSignals(input.signal);
    input.abort("input");
    expect(last.signal.reason).toBe("input");
  });
});
