import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { testModelPath } from "../helpers/testModel.js";

// One gateway over two instances of the test model (2 sequences each), under the default policy, `prefix`.
const MODEL = "stories260K";
let server: TestServer;
let ids: string[];

type Message = OpenAI.Chat.Completions.ChatCompletionMessageParam;

beforeAll(async () => {
  const replica = { name: MODEL, file: testModelPath(), embeddings: false };
  server = await startTestServer({ sequences: 2, models: [replica, replica] });
  ids = server.embedded.worker.worker.list().map((i) => i.instanceId);
  expect(ids).toHaveLength(2);
}, 60_000);

afterAll(async () => {
  await server?.close();
});

const router = () => server.embedded.gateway.router;
const other = (id: string) => ids.find((i) => i !== id)!;

/** One turn: the instance that served it, and the history with its answer. */
async function turn(history: Message[], user: string): Promise<{ instance: string; history: Message[] }> {
  const messages: Message[] = [...history, { role: "user", content: user }];
  const { data, response } = await server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 6, temperature: 0 }).withResponse();
  expect(data.choices[0].finish_reason).toBeTruthy();
  return { instance: response.headers.get("x-smmf-instance") ?? "", history: [...messages, { role: "assistant", content: data.choices[0].message.content ?? "" }] };
}

async function prefixRouting(): Promise<Record<string, number>> {
  const samples = promSamples(await (await fetch(`${server.url}/metrics`)).text());
  const of = (outcome: string) => promValue(samples, "smmf_gateway_prefix_routing_total", { model: MODEL, outcome });
  return { hit: of("hit"), miss: of("miss"), overflow: of("overflow") };
}

function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));
}

/** A long streaming turn held open on the gateway: resolves once its first chunk is in. */
async function holdOpen(history: Message[], user: string) {
  const abort = new AbortController();
  const { data: stream, response } = await server.openai.chat.completions
    .create({ model: MODEL, messages: [...history, { role: "user", content: user }], max_tokens: 1500, temperature: 0, stream: true }, { signal: abort.signal })
    .withResponse();
  const chunks = stream[Symbol.asyncIterator]();
  const first = await chunks.next();
  expect(first.done).toBe(false);
  let ended = false;
  // Read on in the background (the stream stays open until aborted); note when it ends by itself.
  const rest = (async () => {
    try {
      while (!(await chunks.next()).done);
      ended = true;
    } catch {
      // aborted
    }
  })();
  return {
    instance: response.headers.get("x-smmf-instance") ?? "",
    get ended() {
      return ended;
    },
    async close() {
      abort.abort();
      await rest;
    },
  };
}

describe("prefix-aware routing", () => {
  // Conversation histories, and the instance each is on, carried from test to test.
  const conversations: { history: Message[]; instance: string }[] = [];

  it("keeps each conversation on the instance of its first turn, and places 8 new conversations 4 and 4", async () => {
    const before = await prefixRouting();
    for (let c = 0; c < 8; c++) {
      const first = await turn([], `Conversation ${c}: tell me a story about animal number ${c}.`);
      conversations.push({ history: first.history, instance: first.instance });
    }
    for (let t = 2; t <= 4; t++) {
      for (const [c, conversation] of conversations.entries()) {
        const next = await turn(conversation.history, `Go on with story ${c} (turn ${t}).`);
        expect(next.instance, `conversation ${c}, turn ${t}`).toBe(conversation.instance);
        conversation.history = next.history;
      }
    }
    const placed = conversations.map((c) => c.instance);
    expect(new Set(placed)).toEqual(new Set(ids));
    for (const id of ids) expect(placed.filter((p) => p === id), JSON.stringify(placed)).toHaveLength(4);
    expect(delta(before, await prefixRouting())).toEqual({ hit: 24, miss: 8, overflow: 0 });
  });

  it("moves a conversation's next turn to the other instance while its instance is full, and keeps it there", async () => {
    const conversation = conversations[0];
    const home = conversation.instance;
    const before = await prefixRouting();
    // Two long turns that extend the conversation follow it home, and take both of its sequences.
    const held = [await holdOpen(conversation.history, "Tell me the longest story you know."), await holdOpen(conversation.history, "Tell me another very long story.")];
    try {
      expect(held.map((h) => h.instance)).toEqual([home, home]);
      expect(router().inFlightOf(home)).toBe(2);
      const next = await turn(conversation.history, "And then?");
      expect(held.map((h) => h.ended), "the long turns were still running").toEqual([false, false]);
      expect(next.instance).toBe(other(home));
      conversation.history = next.history;
      conversation.instance = next.instance;
      expect(delta(before, await prefixRouting())).toEqual({ hit: 2, miss: 0, overflow: 1 });
    } finally {
      await Promise.all(held.map((h) => h.close()));
    }
    await expect.poll(() => router().inFlightOf(home) + router().inFlightOf(other(home))).toBe(0);
    // Room again at home: the conversation stays where its latest turn is now.
    const after = await turn(conversation.history, "What happened next?");
    expect(after.instance).toBe(conversation.instance);
    conversation.history = after.history;
    // The other conversations stay where they were.
    for (const c of conversations.slice(1, 4)) expect((await turn(c.history, "More, please.")).instance).toBe(c.instance);
  });

  it("serves a conversation's next turn on the remaining instance once its instance is gone", async () => {
    // Conversation 0 is on the instance it moved to; another one has been there from its first turn.
    const gone = conversations[0].instance;
    const left = other(gone);
    const moved = conversations.find((c, i) => i > 0 && c.instance === gone)!;
    const stayed = conversations.find((c) => c.instance === left)!;
    await server.embedded.worker.worker.unload(gone, { drain: true });
    await expect.poll(() => server.embedded.registry.snapshot().map((i) => i.instanceId)).toEqual([left]);
    const before = await prefixRouting();
    // Nothing of it is remembered elsewhere: a miss, on the remaining instance.
    const next = await turn(moved.history, "Where did everyone go?");
    expect(next.instance).toBe(left);
    // ...where it stays.
    expect((await turn(next.history, "And now?")).instance).toBe(left);
    // Conversation 0's earlier turns are remembered on the remaining instance: it goes back there (a hit).
    expect((await turn(conversations[0].history, "Back home?")).instance).toBe(left);
    // The conversations that were on the remaining instance are still hits.
    expect((await turn(stayed.history, "Still here?")).instance).toBe(left);
    expect(delta(before, await prefixRouting())).toEqual({ hit: 3, miss: 1, overflow: 0 });
  });
});
