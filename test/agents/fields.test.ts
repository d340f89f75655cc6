import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { expectBadRequest, MODEL } from "./agentHelpers.js";

/**
 * Request fields on llama.cpp: those the SDKs send that do not change the answer are accepted; those that would
 * change it and cannot be honoured get a 400 naming them.
 */

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ sequences: 4 });
});
afterAll(async () => {
  await server?.close();
});

const messages = [{ role: "user" as const, content: "Tell me a story." }];
const base = { model: MODEL, messages, max_tokens: 6, temperature: 0 };

describe("accepted fields", () => {
  const accepted: [string, Record<string, unknown>][] = [
    ["user", { user: "user-1234" }],
    ["metadata", { metadata: { team: "agents", run: "42" } }],
    ["store", { store: false }],
    ["store true", { store: true }],
    ["service_tier", { service_tier: "auto" }],
    ["service_tier default", { service_tier: "default" }],
    ["prompt_cache_key", { prompt_cache_key: "conversation-7" }],
    ["safety_identifier", { safety_identifier: "hashed-user-id" }],
    ["all of them", { user: "u", metadata: { a: "b" }, store: false, service_tier: "auto", prompt_cache_key: "k", safety_identifier: "s" }],
  ];
  for (const [name, fields] of accepted) {
    it(`chat: ${name} → 200, same answer as without`, async () => {
      const plain = await server.openai.chat.completions.create(base);
      const res = await server.openai.chat.completions.create({ ...base, ...fields } as never);
      expect((res as typeof plain).choices[0].message.content).toBe(plain.choices[0].message.content);
    });
  }

  it("chat: stream_options on a stream → 200", async () => {
    for (const include_usage of [true, false]) {
      const stream = await server.openai.chat.completions.create({ ...base, stream: true, stream_options: { include_usage } });
      let usageSeen = false;
      let text = "";
      for await (const chunk of stream) {
        if (chunk.usage) usageSeen = true;
        text += chunk.choices[0]?.delta.content ?? "";
      }
      expect(usageSeen).toBe(include_usage);
      expect(text.length).toBeGreaterThan(0);
    }
  });

  it("completions: user and stream_options → 200", async () => {
    const res = await server.openai.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 4, user: "user-1" });
    expect(res.choices[0].text.length).toBeGreaterThan(0);
    const stream = await server.openai.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 4, user: "user-1", stream: true, stream_options: { include_usage: true } });
    let usageSeen = false;
    for await (const chunk of stream) if (chunk.usage) usageSeen = true;
    expect(usageSeen).toBe(true);
  });
});

describe("refused fields", () => {
  it("logit_bias → 400 naming logit_bias", async () => {
    await expectBadRequest(server.openai.chat.completions.create({ ...base, logit_bias: { "50256": -100 } }), "logit_bias");
  });

  it("an unknown field → 400 naming it", async () => {
    await expectBadRequest(server.openai.chat.completions.create({ ...base, foo_bar: 1 } as never), "foo_bar");
    await expectBadRequest(server.openai.completions.create({ model: MODEL, prompt: "Once", max_tokens: 4, foo_bar: 1 } as never), "foo_bar");
  });

  it("audio → 400 naming audio", async () => {
    await expectBadRequest(server.openai.chat.completions.create({ ...base, audio: { voice: "alloy", format: "wav" }, modalities: ["text", "audio"] }), /^(audio|modalities)$/);
    await expectBadRequest(server.openai.chat.completions.create({ ...base, audio: { voice: "alloy", format: "wav" } }), "audio");
  });

  it("a streamed request with a refused field is refused before the stream starts", async () => {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...base, stream: true, foo_bar: 1 }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { param: string } };
    expect(body.error.param).toBe("foo_bar");
  });
});
