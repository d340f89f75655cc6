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
