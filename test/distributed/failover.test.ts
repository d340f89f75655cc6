import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import {
  complete,
  countBy,
  killAll,
  MODEL,
  registryEntries,
  startDistGateway,
  startDistWorker,
  waitFor,
  waitUntilReady,
  type DistGateway,
  type DistWorker,
} from "../helpers/distCluster.js";

// Two workers (8 sequences each) behind one gateway; one worker is SIGKILLed while 200 requests run.
const LEASE_TTL_S = 2;
const REQUESTS = 200;
let etcd: TestEtcd;
let survivor: DistWorker;
let victim: DistWorker;
let gateway: DistGateway;

beforeAll(async () => {
  etcd = await startEtcd();
  [survivor, victim] = await Promise.all([
    startDistWorker(etcd, { workerId: "fo-survivor", sequences: 8, leaseTtl: LEASE_TTL_S }),
    startDistWorker(etcd, { workerId: "fo-victim", sequences: 8, leaseTtl: LEASE_TTL_S }),
  ]);
  // Requests beyond the 16 sequences wait in the gateway's queue; on a slow machine the last of 200 may wait long.
  gateway = await startDistGateway(etcd, ["--queue-timeout-ms", "120000", "--queue-size", "512"]);
  await waitUntilReady(gateway);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, survivor, victim);
  await etcd?.close();
});

type Kind = "chat-stream" | "completion-stream" | "chat" | "completion";

interface Run {
  i: number;
  kind: Kind;
  maxTokens: number;
  instance?: string;
  text: string;
  /** Content chunks received (streaming). */
  chunks: number;
  finishReason: string | null;
  completionTokens?: number;
  /** The usage's prompt_tokens. */
  promptTokens?: number;
  done: boolean;
}

async function runOne(run: Run): Promise<void> {
  const openai = gateway.openai;
  const messages = [{ role: "user" as const, content: `Tell me story number ${run.i}` }];
  const prompt = `Story ${run.i}: once upon a time`;
  switch (run.kind) {
    case "chat-stream": {
      const { data, response } = await openai.chat.completions
        .create({ model: MODEL, messages, max_tokens: run.maxTokens, stream: true, stream_options: { include_usage: true } })
        .withResponse();
      run.instance = response.headers.get("x-smmf-instance") ?? "";
      for await (const chunk of data) {
        if (chunk.usage) {
          run.completionTokens = chunk.usage.completion_tokens;
          run.promptTokens = chunk.usage.prompt_tokens;
        }
        const choice = chunk.choices[0];
        if (!choice) continue;
        if (choice.delta.content !== undefined && choice.delta.content !== null && !choice.delta.role) {
          run.text += choice.delta.content;
          run.chunks++;
        }
        if (choice.finish_reason) run.finishReason = choice.finish_reason;
      }
      break;
    }
    case "completion-stream": {
      const { data, response } = await openai.completions
        .create({ model: MODEL, prompt, max_tokens: run.maxTokens, stream: true, stream_options: { include_usage: true } })
        .withResponse();
      run.instance = response.headers.get("x-smmf-instance") ?? "";
      for await (const chunk of data) {
        if (chunk.usage) {
          run.completionTokens = chunk.usage.completion_tokens;
          run.promptTokens = chunk.usage.prompt_tokens;
        }
        const choice = chunk.choices[0];
        if (!choice) continue;
        if (choice.finish_reason) run.finishReason = choice.finish_reason;
        else {
          run.text += choice.text;
          run.chunks++;
        }
      }
      break;
    }
    case "chat": {
      const { data, response } = await openai.chat.completions.create({ model: MODEL, messages, max_tokens: run.maxTokens }).withResponse();
      run.instance = response.headers.get("x-smmf-instance") ?? "";
      run.text = data.choices[0]?.message.content ?? "";
      run.finishReason = data.choices[0]?.finish_reason ?? null;
      run.completionTokens = data.usage?.completion_tokens;
      run.promptTokens = data.usage?.prompt_tokens;
      break;
    }
    case "completion": {
      const { data, response } = await openai.completions.create({ model: MODEL, prompt, max_tokens: run.maxTokens }).withResponse();
      run.instance = response.headers.get("x-smmf-instance") ?? "";
      run.text = data.choices[0]?.text ?? "";
      run.finishReason = data.choices[0]?.finish_reason ?? null;
      run.completionTokens = data.usage?.completion_tokens;
      run.promptTokens = data.usage?.prompt_tokens;
      break;
    }
  }
  run.done = true;
}

/** What the scenario (the first test) saw; the later tests check parts of it. */
interface Scenario {
  runs: Run[];
  errors: string[];
  /** Streams with content from the victim when it was killed, and how many chunks each had then. */
  cutOff: { run: Run; chunksBeforeKill: number }[];
  /** Milliseconds from the kill to the deletion of the victim's key (watched). */
  keyGoneAfterMs: number;
  keysAfter: string[];
}
let scenario: Scenario | undefined;

function requireScenario(): Scenario {
  if (!scenario) throw new Error("the failover scenario (first test) did not run to the end");
  return scenario;
}

/** Requests that did not finish in full: text, finish_reason "length", completion_tokens = max_tokens, chunks = tokens. */
function incomplete(list: Run[]): string[] {
  return list.flatMap((run) => {
    const ok =
      run.done &&
      run.text.length > 0 &&
      run.finishReason === "length" &&
      run.completionTokens === run.maxTokens &&
      (!run.kind.endsWith("stream") || run.chunks === run.maxTokens);
    if (ok) return [];
    const where = run.instance === victim.instanceId ? "victim" : run.instance === survivor.instanceId ? "survivor" : run.instance;
    return [`#${run.i} ${run.kind} (first on ${where}): max_tokens ${run.maxTokens}, completion_tokens ${run.completionTokens}, chunks ${run.chunks}, finish ${run.finishReason}, text …${JSON.stringify(run.text.slice(-30))}`];
  });
}

describe("distributed mode: failover", () => {
  it("loses no request of 200 in flight when a worker is SIGKILLed while streams run on it", async () => {
    const kinds: Kind[] = ["chat-stream", "completion-stream", "chat-stream", "completion-stream", "chat", "completion"];
    const runs: Run[] = Array.from({ length: REQUESTS }, (_, i) => ({
      i,
      kind: kinds[i % kinds.length],
      // Streams (the ones a kill cuts off) 100..250 tokens; plain requests shorter, to keep the run short.
      maxTokens: kinds[i % kinds.length].endsWith("stream") ? 100 + ((i * 37) % 151) : 20 + ((i * 13) % 61),
      text: "",
      chunks: 0,
      finishReason: null,
      done: false,
    }));
    const errors: string[] = [];
    // All 200 at once: 16 run on the workers' sequences, the rest wait in the gateway's queue.
    const all = Promise.all(
      runs.map((run) =>
        runOne(run).catch((err: unknown) => {
          errors.push(`#${run.i} (${run.kind}, first on ${run.instance ?? "?"}): ${(err as Error)?.message ?? String(err)}`);
        }),
      ),
    );

    // Watch the victim's key, to time its removal once the lease it is bound to expires.
    const client = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 2_000 });
    let deletedAt: number | undefined;
    const watcher = await client.watch().key(victim.key).create();
    watcher.on("delete", () => (deletedAt ??= performance.now()));
    try {
      // Kill the victim once several streams on it are under way.
      const streamingOnVictim = () => runs.filter((r) => r.kind.endsWith("stream") && r.instance === victim.instanceId && r.chunks > 0 && !r.done);
      await waitFor("3 streams under way on the victim", () => streamingOnVictim().length >= 3, 60_000, 5);
      const killedAt = performance.now();
      victim.proc.signal("SIGKILL");
      const cutOff = streamingOnVictim().map((run) => ({ run, chunksBeforeKill: run.chunks }));
      expect((await victim.proc.exited).signal).toBe("SIGKILL");

      await waitFor("the victim's key to be deleted", () => deletedAt !== undefined, (LEASE_TTL_S + 10) * 1_000, 20);
      const keysAfter = (await registryEntries(etcd)).map((e) => e.key);
      await all;
      scenario = { runs, errors, cutOff, keyGoneAfterMs: deletedAt! - killedAt, keysAfter };
    } finally {
      await all;
      await watcher.cancel().catch(() => undefined);
      client.close();
    }

    expect(errors, `${errors.length} failed requests:\n${errors.slice(0, 10).join("\n")}`).toEqual([]);
    expect(runs.every((r) => r.done)).toBe(true);
    const counts = countBy(runs.map((r) => r.instance!));
    expect(counts.get(victim.instanceId) ?? 0).toBeGreaterThanOrEqual(3);
    expect(counts.get(survivor.instanceId) ?? 0).toBeGreaterThan(0);
  }, 150_000);

  it("continues the streams cut off by the kill on the other worker: full length, one chunk per token", () => {
    const { cutOff } = requireScenario();
    expect(cutOff.length).toBeGreaterThanOrEqual(3);
    const continued = cutOff.filter(({ run, chunksBeforeKill }) => chunksBeforeKill < run.maxTokens).map(({ run }) => run);
    expect(continued.length).toBeGreaterThan(0);
    expect(incomplete(continued), "streams that were on the killed worker").toEqual([]);
  });

  it("counts the original prompt in the usage of a stream that failed over: prompt_tokens as without failover", async () => {
    const { cutOff } = requireScenario();
    const continued = cutOff.filter(({ run, chunksBeforeKill }) => chunksBeforeKill < run.maxTokens).map(({ run }) => run);
    expect(continued.length).toBeGreaterThan(0);
    // Each stream that was continued on the survivor, sent again as it was: only the survivor is left, so this
    // time it runs on one instance from start to end, and its prompt_tokens is the prompt's alone.
    const mismatches: string[] = [];
    for (const run of continued) {
      const again: Run = { i: run.i, kind: run.kind, maxTokens: run.maxTokens, text: "", chunks: 0, finishReason: null, done: false };
      await runOne(again);
      expect(again.instance).toBe(survivor.instanceId);
      expect(again.promptTokens).toBeGreaterThan(0);
      if (run.promptTokens !== again.promptTokens) mismatches.push(`#${run.i} ${run.kind}: prompt_tokens ${run.promptTokens} with failover, ${again.promptTokens} without`);
    }
    expect(mismatches).toEqual([]);
  }, 60_000);

  it("removes the killed worker's key from etcd within the lease TTL + 1 s", () => {
    const { keyGoneAfterMs, keysAfter } = requireScenario();
    expect(keyGoneAfterMs, `key gone ${Math.round(keyGoneAfterMs)} ms after the kill`).toBeLessThanOrEqual((LEASE_TTL_S + 1) * 1_000);
    expect(keysAfter).toEqual([survivor.key]);
  });

  it("completes every request to max_tokens, with usage equal to the streamed chunks", () => {
    expect(incomplete(requireScenario().runs), "all requests").toEqual([]);
  });

  it("sends later requests to the surviving worker", async () => {
    requireScenario();
    for (let i = 0; i < 5; i++) expect((await complete(gateway.openai, 4, { timeoutMs: 10_000 })).instance).toBe(survivor.instanceId);
  }, 60_000);
});
