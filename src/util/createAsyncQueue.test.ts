import { describe, it, expect } from "vitest";
import { createAsyncQueue } from "./createAsyncQueue.js";

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
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
    const result = collect(q);
    await new Promise((r) => setTimeout(r, 5));
    q.push("a");
    await new Promise((r) => setTimeout(r, 5));
    q.push("b");
    q.end();
    expect(await result).toEqual(["a", "b"]);
  });

  it("a consumer waiting with no items finishes on end", async () => {
    const q = createAsyncQueue<number>();
    const result = collect(q);
    await new Promise((r) => setTimeout(r, 5));
    q.end();
    expect(await result).toEqual([]);
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
    const result = collect(q);
    await new Promise((r) => setTimeout(r, 5));
    q.fail(new Error("late"));
    await expect(result).rejects.toThrow("late");
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
    await new Promise((r) => setTimeout(r, 5));
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
