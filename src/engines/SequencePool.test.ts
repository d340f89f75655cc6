import { describe, it, expect } from "vitest";
import { SmmfError } from "../errors/SmmfError.js";
import { SequencePool } from "./SequencePool.js";

const never = () => new AbortController().signal;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SmmfError);
    return (err as SmmfError).code;
  }
  throw new Error("expected a rejection");
}

/** Lets pending promise callbacks run. */
const tick = () => new Promise<void>((r) => setImmediate(r));

describe("SequencePool", () => {
  it("hands out free items immediately and counts them in use", async () => {
    const pool = new SequencePool(["a", "b"], 4);
    expect(pool.inUse()).toBe(0);
    const x = await pool.acquire(never());
    const y = await pool.acquire(never());
    expect(new Set([x, y])).toEqual(new Set(["a", "b"]));
    expect(pool.inUse()).toBe(2);
    expect(pool.queued()).toBe(0);
    pool.release(x);
    expect(pool.inUse()).toBe(1);
  });

  it("queues when empty and serves waiters in FIFO order", async () => {
    const pool = new SequencePool([1], 10);
    const first = await pool.acquire(never());
    const order: string[] = [];
    const w1 = pool.acquire(never()).then((v) => (order.push("w1"), v));
    const w2 = pool.acquire(never()).then((v) => (order.push("w2"), v));
    const w3 = pool.acquire(never()).then((v) => (order.push("w3"), v));
    expect(pool.queued()).toBe(3);
    await tick();
    expect(order).toEqual([]);

    pool.release(first);
    expect(await w1).toBe(1);
    expect(pool.queued()).toBe(2);
    await tick();
    expect(order).toEqual(["w1"]);

    pool.release(1);
    pool.release(1);
    await Promise.all([w2, w3]);
    expect(order).toEqual(["w1", "w2", "w3"]);
    expect(pool.queued()).toBe(0);
    // item was handed over directly, never returned to the free list
    expect(pool.inUse()).toBe(1);
  });

  it("hands a released item straight to the waiter", async () => {
    const pool = new SequencePool([{ id: 1 }], 1);
    const item = await pool.acquire(never());
    const waiting = pool.acquire(never());
    pool.release(item);
    expect(await waiting).toBe(item);
    expect(pool.inUse()).toBe(1);
  });

  it("rejects with resource_exhausted beyond the queue bound", async () => {
    const pool = new SequencePool(["a"], 2);
    await pool.acquire(never());
    const w1 = pool.acquire(never());
    const w2 = pool.acquire(never());
    expect(await codeOf(pool.acquire(never()))).toBe("resource_exhausted");
    expect(pool.queued()).toBe(2);
    pool.release("a");
    expect(await w1).toBe("a");
    // a place in the queue is free again
    const w3 = pool.acquire(never());
    expect(pool.queued()).toBe(2);
    pool.release("a");
    pool.release("a");
    expect(await w2).toBe("a");
    expect(await w3).toBe("a");
  });

  it("with maxQueue 0 never queues", async () => {
    const pool = new SequencePool(["a"], 0);
    await pool.acquire(never());
    expect(await codeOf(pool.acquire(never()))).toBe("resource_exhausted");
  });

  it("rejects an already aborted signal with cancelled, even with free items", async () => {
    const pool = new SequencePool(["a"], 1);
    const ac = new AbortController();
    ac.abort();
    expect(await codeOf(pool.acquire(ac.signal))).toBe("cancelled");
    expect(pool.inUse()).toBe(0);
  });

  it("abort while waiting rejects with cancelled and removes the waiter", async () => {
    const pool = new SequencePool(["a"], 5);
    await pool.acquire(never());
    const ac = new AbortController();
    const aborted = pool.acquire(ac.signal);
    const next = pool.acquire(never());
    expect(pool.queued()).toBe(2);
    ac.abort();
    expect(await codeOf(aborted)).toBe("cancelled");
    expect(pool.queued()).toBe(1);
    // the release goes to the remaining waiter, not the aborted one
    pool.release("a");
    expect(await next).toBe("a");
    expect(pool.queued()).toBe(0);
  });

  it("aborting after being served has no effect", async () => {
    const pool = new SequencePool(["a"], 5);
    await pool.acquire(never());
    const ac = new AbortController();
    const waiting = pool.acquire(ac.signal);
    pool.release("a");
    expect(await waiting).toBe("a");
    ac.abort();
    await tick();
    expect(pool.inUse()).toBe(1);
    expect(pool.queued()).toBe(0);
  });

  it("rejectAll rejects every waiter with the given error and empties the queue", async () => {
    const pool = new SequencePool(["a"], 5);
    await pool.acquire(never());
    const ac = new AbortController();
    const w1 = pool.acquire(ac.signal);
    const w2 = pool.acquire(never());
    const boom = new SmmfError("unavailable", "closing");
    pool.rejectAll(boom);
    await expect(w1).rejects.toBe(boom);
    await expect(w2).rejects.toBe(boom);
    expect(pool.queued()).toBe(0);
    // a later abort does not throw or change anything
    ac.abort();
    // released item goes back to the free list
    pool.release("a");
    expect(pool.inUse()).toBe(0);
    expect(await pool.acquire(never())).toBe("a");
  });
  it("with a score, hands out the best-scoring free item, and the least recently released among equals", async () => {
    const pool = new SequencePool(["a", "b", "c"], 4);
    const scores: Record<string, number> = { a: 0, b: 5, c: 5 };
    // b and c tie: b was released first (free in order a, b, c).
    expect(await pool.acquire(never(), (x) => scores[x])).toBe("b");
    pool.release("b");
    // Now c is the least recently released of the two.
    expect(await pool.acquire(never(), (x) => scores[x])).toBe("c");
    // Nothing scores: the least recently used.
    expect(await pool.acquire(never(), () => 0)).toBe("a");
  });
});
