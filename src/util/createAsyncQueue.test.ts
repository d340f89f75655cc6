import { describe, it, expect } from "vitest";
import { createAsyncQueue } from "./createAsyncQueue.js";

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** Resolves once every promise continuation queued so far has run (a consumer woken now has taken what it could). */
const settled = () => new Promise<void>((r) => setImmediate(r));

/** A consumer that shows what it has taken so far, and whether the iteration has ended. */
function consume<T>(iterable: AsyncIterable<T>): { seen: T[]; ended: () => boolean; done: Promise<void> } {
  const seen: T[] = [];
  let ended = false;
  const done = (async () => {
    for await (const item of iterable) seen.push(item);
    ended = true;
  })();
  return { seen, ended: () => ended, done };
}

describe("createAsyncQueue", () => {
  it("yields items pushed before iteration, in order, then ends", async () => {
    const q = createAsyncQueue<number>();
    q.push(1);
    q.push(2);
    q.push(3);
    q.end();
    expect(await collect(q)).toEqual([1, 2, 3]);
  });

  it("wakes a waiting consumer on push and on end", async () => {
    const q = createAsyncQueue<string>();
    const c = consume(q);
    await settled();
    expect(c.seen).toEqual([]); // waiting: nothing to take
    q.push("a");
    await settled();
    expect(c.seen).toEqual(["a"]); // woken, and waiting again
    q.push("b");
    await settled();
    expect(c.seen).toEqual(["a", "b"]);
    expect(c.ended()).toBe(false);
    q.end();
    await c.done;
    expect(c.seen).toEqual(["a", "b"]);
  });

  it("a consumer waiting with no items finishes on end", async () => {
    const q = createAsyncQueue<number>();
    const c = consume(q);
    await settled();
    expect(c.ended()).toBe(false); // waiting
    q.end();
    await c.done;
    expect(c.seen).toEqual([]);
  });

  it("delivers buffered items before the failure", async () => {
    const q = createAsyncQueue<number>();
    const seen: number[] = [];
    q.push(1);
    q.push(2);
    const boom = new Error("boom");
    q.fail(boom);
    await expect(
      (async () => {
        for await (const n of q) seen.push(n);
      })(),
    ).rejects.toBe(boom);
    expect(seen).toEqual([1, 2]);
  });

  it("fail wakes a waiting consumer", async () => {
    const q = createAsyncQueue<number>();
    const c = consume(q);
    await settled();
    expect(c.ended()).toBe(false); // waiting
    q.fail(new Error("late"));
    await expect(c.done).rejects.toThrow("late");
  });

  it("ignores pushes after end and fail after end", async () => {
    const q = createAsyncQueue<number>();
    q.push(1);
    q.end();
    q.push(2);
    q.fail(new Error("ignored"));
    expect(await collect(q)).toEqual([1]);
  });

  it("ignores pushes after fail", async () => {
    const q = createAsyncQueue<number>();
    q.fail(new Error("first"));
    q.push(1);
    await expect(collect(q)).rejects.toThrow("first");
  });

  it("keeps items pushed while the consumer is busy", async () => {
    const q = createAsyncQueue<number>();
    const seen: number[] = [];
    const consumer = (async () => {
      for await (const n of q) {
        seen.push(n);
        if (n === 1) {
          q.push(10);
          q.push(11);
        }
      }
    })();
    q.push(1);
    await settled();
    expect(seen).toEqual([1, 10, 11]); // all taken before the end below
    q.end();
    await consumer;
    expect(seen).toEqual([1, 10, 11]);
  });
});

describe("createAsyncQueue with deferWake", () => {
  it("wakes the consumer only after already-scheduled setImmediate work, and delivers everything in order", async () => {
    const q = createAsyncQueue<number>({ deferWake: true });
    const order: string[] = [];
    const consumed = (async () => {
      const got: number[] = [];
      for await (const n of q) {
        order.push(`consume ${n}`);
        got.push(n);
      }
      return got;
    })();
    await new Promise((r) => setImmediate(r));
    q.push(1);
    setImmediate(() => order.push("producer step"));
    q.push(2);
    q.end();
    expect(await consumed).toEqual([1, 2]);
    expect(order[0]).toBe("producer step");
  });
});
