import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import {
  complete,
  countBy,
  failures,
  killAll,
  MODEL,
  registryEntries,
  runLimited,
  startDistGateway,
  startDistWorker,
  waitUntilReady,
  type DistGateway,
  type DistWorker,
} from "../helpers/distCluster.js";

// Two `smmf worker` processes and two `smmf gateway` processes (p2c and round-robin) on one etcd.
let etcd: TestEtcd;
let workers: DistWorker[] = [];
let p2c: DistGateway;
let roundRobin: DistGateway;

beforeAll(async () => {
  etcd = await startEtcd();
  workers = await Promise.all([
    startDistWorker(etcd, { workerId: "lb-worker-a", sequences: 8 }),
    startDistWorker(etcd, { workerId: "lb-worker-b", sequences: 8 }),
  ]);
  [p2c, roundRobin] = await Promise.all([startDistGateway(etcd, ["--policy", "p2c"]), startDistGateway(etcd, ["--policy", "round-robin"])]);
  await Promise.all([waitUntilReady(p2c), waitUntilReady(roundRobin)]);
}, 120_000);

afterAll(async () => {
  await killAll(p2c, roundRobin, ...workers);
  await etcd?.close();
});

describe("distributed mode: registry records", () => {
  it("publishes one readable JSON record per instance, matching the worker", async () => {
    const entries = await registryEntries(etcd);
    expect(entries).toHaveLength(2);
    for (const worker of workers) {
      const mine = entries.filter((e) => e.record.workerId === worker.workerId);
      expect(mine).toHaveLength(1);
      const { key, record } = mine[0];
      expect(key).toBe(`/smmf/v1/instances/${MODEL}/${record.instanceId}`);
      expect(record).toMatchObject({
        instanceId: worker.instanceId,
        model: MODEL,
        engine: "llama.cpp",
        workerId: worker.workerId,
        address: worker.address,
        state: "INSTANCE_STATE_ONLINE",
        maxConcurrency: 8,
        version: 1,
      });
      expect(record.contextSize).toBeGreaterThan(0);
      expect(record.embeddingSize).toBeGreaterThan(0);
      expect(Number.isNaN(Date.parse(record.startedAt))).toBe(false);
      expect(Math.abs(Date.parse(record.startedAt) - Date.now())).toBeLessThan(10 * 60_000);
    }
    expect(new Set(entries.map((e) => e.record.instanceId)).size).toBe(2);
    expect(new Set(entries.map((e) => e.record.address)).size).toBe(2);
  });

  it("lists the model once on the gateway, whatever the number of instances", async () => {
    const models = [];
    for await (const m of p2c.openai.models.list()) models.push(m.id);
    expect(models).toEqual([MODEL]);
  });
});

describe("distributed mode: load balancing", () => {
  it("spreads 100 requests (10 at a time) over both instances, each taking at least 30%", async () => {
    const results = await runLimited(100, 10, () => complete(p2c.openai, 8));
    expect(failures(results)).toEqual([]);
    const done = results.map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof complete>>>).value);
    const counts = countBy(done.map((r) => r.instance));
    const ids = workers.map((w) => w.instanceId);
    expect([...counts.keys()].sort()).toEqual([...ids].sort());
    for (const id of ids) expect(counts.get(id), `requests on ${id}: ${JSON.stringify([...counts])}`).toBeGreaterThanOrEqual(30);
    for (const r of done) {
      expect(r.text.length).toBeGreaterThan(0);
      expect(r.finishReason).toBe("length");
      expect(r.completionTokens).toBe(8);
      // Non-streaming answers say what the gateway hop cost.
      expect(r.overheadMs).toMatch(/^-?\d+(\.\d+)?$/);
      expect(Number(r.overheadMs)).toBeGreaterThan(-5);
    }
  }, 120_000);

  it("alternates strictly between the two instances with --policy round-robin", async () => {
    const order: string[] = [];
    for (let i = 0; i < 12; i++) order.push((await complete(roundRobin.openai, 4)).instance);
    const ids = new Set(workers.map((w) => w.instanceId));
    for (const id of order) expect(ids.has(id)).toBe(true);
    for (let i = 1; i < order.length; i++) expect(order[i], `request ${i} of ${JSON.stringify(order)}`).not.toBe(order[i - 1]);
    expect(countBy(order).size).toBe(2);
  }, 60_000);

  it("answers streaming chat on both instances through round-robin", async () => {
    const seen: string[] = [];
    for (let i = 0; i < 2; i++) {
      const { data: stream, response } = await roundRobin.openai.chat.completions
        .create({ model: MODEL, messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 16, stream: true, stream_options: { include_usage: true } })
        .withResponse();
      seen.push(response.headers.get("x-smmf-instance") ?? "");
      let chunks = 0;
      let usage;
      for await (const chunk of stream) {
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices[0]?.delta;
        if (delta && delta.content !== undefined && delta.content !== null && !delta.role) chunks++;
      }
      expect(usage?.completion_tokens).toBe(16);
      expect(chunks).toBe(16);
    }
    expect(new Set(seen)).toEqual(new Set(workers.map((w) => w.instanceId)));
  }, 60_000);
});

describe("distributed mode: token accounting at max_tokens", () => {
  it("counts every generated token of a chat answer cut by max_tokens, even a trailing newline", async () => {
    // Greedy decoding makes the answer repeatable: find where a token starting with a newline comes, then ask for
    // exactly up to that token. The chat template's stop titles begin with a newline ("\n\n### User"), so that
    // last token is the start of a possible stop title when max_tokens is reached.
    const messages = [{ role: "user" as const, content: "Tell me a story" }];
    const stream = await p2c.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 200, temperature: 0, stream: true });
    const pieces: string[] = [];
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta;
      if (delta && delta.content !== undefined && delta.content !== null && !delta.role) pieces.push(delta.content);
    }
    expect(pieces).toHaveLength(200);
    const k = pieces.findIndex((p) => p.startsWith("\n"));
    expect(k, "the greedy answer has a newline within 200 tokens").toBeGreaterThan(0);
    const res = await p2c.openai.chat.completions.create({ model: MODEL, messages, max_tokens: k + 1, temperature: 0 });
    expect(res.choices[0].finish_reason).toBe("length");
    expect(res.usage?.completion_tokens, `max_tokens ${k + 1}, answer ${JSON.stringify(res.choices[0].message.content)}`).toBe(k + 1);
    expect(res.choices[0].message.content).toBe(pieces.slice(0, k).join("") + "\n");
  }, 60_000);
});
