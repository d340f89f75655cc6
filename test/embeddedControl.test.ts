import { dirname } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, waitSettled } from "./helpers/controlCluster.js";
import { startTestServer, type TestServer } from "./helpers/startTestServer.js";
import { testModelPath } from "./helpers/testModel.js";

// The embedded mode (`smmf serve`) runs the controller too: its desired state lives in memory.
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ modelDir: dirname(testModelPath()) });
}, 60_000);

afterAll(async () => {
  await server?.close();
});

describe("embedded mode: the controller API", () => {
  it("starts a second model on the embedded worker, serves it, restarts it and stops it; the configured model is left alone", async () => {
    const started = await api(server.url, "POST", "/api/v1/models", { name: "extra", source: "stories260K.gguf", llamaCpp: { sequences: 1, contextSize: 128, embeddings: false } });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const model = await waitSettled(server.url, "extra", 1);
    const completion = await server.openai.completions.create({ model: "extra", prompt: "Once", max_tokens: 3 });
    expect(completion.usage?.completion_tokens).toBe(3);

    const restarted = await api(server.url, "POST", "/api/v1/models/extra/restart");
    expect(restarted.status).toBe(200);
    const after = await waitSettled(server.url, "extra", 1);
    expect(after.instances![0].instanceId).not.toBe(model.instances![0].instanceId);

    const list = (await api(server.url, "GET", "/api/v1/models")).body.data as { name: string; managed?: boolean }[];
    expect(list.map((m) => [m.name, m.managed ?? false])).toEqual([["extra", true], ["stories260K", false]]);

    expect((await api(server.url, "DELETE", "/api/v1/models/extra")).status).toBe(200);
    await expect.poll(async () => (await api(server.url, "GET", "/v1/models")).body.data.map((m: { id: string }) => m.id), { timeout: 10_000 }).toEqual(["stories260K"]);
    const still = await server.openai.completions.create({ model: "stories260K", prompt: "Once", max_tokens: 2 });
    expect(still.usage?.completion_tokens).toBe(2);
  });
});
