import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { killAll, MODEL, startDistGateway, startDistWorker, waitUntilReady, type DistGateway, type DistWorker } from "../helpers/distCluster.js";

// The only instance of a model dies mid-stream: nothing can continue the stream.
let etcd: TestEtcd;
let worker: DistWorker;
let gateway: DistGateway;

beforeAll(async () => {
  etcd = await startEtcd();
  worker = await startDistWorker(etcd, { workerId: "lonely-worker" });
  gateway = await startDistGateway(etcd);
  await waitUntilReady(gateway);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, worker);
  await etcd?.close();
});

describe("distributed mode: the last instance dies mid-stream", () => {
  it("ends the stream with an error event and data: [DONE], and the gateway keeps answering", async () => {
    const res = await fetch(`${gateway.baseURL}/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "Once upon a time", max_tokens: 2000, stream: true }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let body = "";
    while (!body.includes('"text"')) {
      const { value, done } = await reader.read();
      if (done) break;
      body += decoder.decode(value, { stream: true });
    }
    worker.proc.child.kill("SIGKILL");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      body += decoder.decode(value, { stream: true });
    }
    const events = body.split("\n\n").filter(Boolean);
    expect(events.at(-1)).toBe("data: [DONE]");
    const error = JSON.parse(events.at(-2)!.slice("data: ".length)) as { error: { code: string; type: string; message: string } };
    expect(error.error.code).toBe("unavailable");
    expect(error.error.type).toBe("service_unavailable_error");
    // With no instance left, a new request gets a clear answer at once rather than hanging.
    const next = await fetch(`${gateway.baseURL}/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "Once", max_tokens: 2 }),
    });
    expect([404, 503]).toContain(next.status);
    expect(((await next.json()) as { error: { code: string } }).error.code).toMatch(/^(model_not_found|unavailable)$/);
  });
});
