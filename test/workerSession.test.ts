import { dirname } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InstanceState } from "../src/gen/smmf/v1/instance_pb.js";
import { SessionRequestSchema, WorkerService, type SessionRequest, type SessionResponse } from "../src/gen/smmf/v1/worker_pb.js";
import { MemoryRegistry } from "../src/registry/MemoryRegistry.js";
import { createLogger } from "../src/telemetry/createLogger.js";
import { createAsyncQueue, type AsyncQueue } from "../src/util/createAsyncQueue.js";
import { startWorker, type RunningWorker } from "../src/worker/startWorker.js";
import { testModelPath } from "./helpers/testModel.js";

// The worker's side of the controller session, over real gRPC: terms, commands, status, memory checks.
let running: RunningWorker;
let registry: MemoryRegistry;
let client: Client<typeof WorkerService>;
const logger = createLogger("silent");

beforeAll(async () => {
  registry = new MemoryRegistry();
  running = await startWorker({ id: "session-w", host: "127.0.0.1", port: 0, registry, logger, modelDir: dirname(testModelPath()), maxMemoryBytes: 64 * 1024 * 1024, engineDefaults: { threads: 1, gpu: false } });
  client = createClient(WorkerService, createGrpcTransport({ baseUrl: running.address }));
}, 60_000);

afterAll(async () => {
  await running?.close();
});

interface Session {
  requests: AsyncQueue<SessionRequest>;
  responses: AsyncIterator<SessionResponse>;
  abort: AbortController;
}

function open(term: bigint): Session {
  const requests = createAsyncQueue<SessionRequest>();
  requests.push(create(SessionRequestSchema, { command: { case: "open", value: { controllerId: `c-${term}`, term } } }));
  const abort = new AbortController();
  return { requests, abort, responses: client.session(requests, { signal: abort.signal })[Symbol.asyncIterator]() };
}

async function next(session: Session, kind: "status" | "result"): Promise<SessionResponse> {
  for (;;) {
    const r = await session.responses.next();
    if (r.done) throw new Error("session ended");
    if (r.value.event.case === kind) return r.value;
  }
}

const spec = (instanceId: string, contextSize = 128) => ({ model: "sess", engine: "llama.cpp", source: "stories260K.gguf", instanceId, managed: true, generation: 7n, llamaCpp: { contextSize, sequences: 1, embeddings: false } });

describe("worker session", () => {
  it("sends its status at once, runs commands with results, and reports each change", async () => {
    const s = open(5n);
    const first = await next(s, "status");
    expect(first.event.value).toMatchObject({ worker: { workerId: "session-w", address: running.address, memoryTotalBytes: 64n * 1024n * 1024n }, instances: [] });

    s.requests.push(create(SessionRequestSchema, { commandId: 1n, command: { case: "load", value: { spec: spec("sess-1") } } }));
    const result = await next(s, "result");
    expect(result.event.value).toMatchObject({ commandId: 1n, ok: true, instance: { instanceId: "sess-1", state: InstanceState.ONLINE, managed: true, generation: 7n } });
    const memory = result.event.case === "result" ? result.event.value.instance!.memoryBytes : 0n;
    expect(memory).toBeGreaterThan(0n);
    expect(registry.snapshot().map((i) => [i.instanceId, i.state])).toEqual([["sess-1", InstanceState.ONLINE]]);
    const status = await next(s, "status");
    if (status.event.case !== "status") throw new Error("no status");
    expect(status.event.value.instances.map((i) => i.instanceId)).toEqual(["sess-1"]);
    expect(status.event.value.worker!.memoryFreeBytes).toBe(64n * 1024n * 1024n - memory);

    s.requests.push(create(SessionRequestSchema, { commandId: 2n, command: { case: "setState", value: { instanceId: "sess-1", state: InstanceState.OFFLINE } } }));
    expect((await next(s, "result")).event.value).toMatchObject({ commandId: 2n, ok: true, instance: { state: InstanceState.OFFLINE } });
    expect(registry.snapshot()[0].state).toBe(InstanceState.OFFLINE);

    s.requests.push(create(SessionRequestSchema, { commandId: 3n, command: { case: "unload", value: { instanceId: "sess-1", drain: true } } }));
    expect((await next(s, "result")).event.value).toMatchObject({ commandId: 3n, ok: true });
    expect(registry.snapshot()).toEqual([]);

    s.requests.push(create(SessionRequestSchema, { commandId: 4n, command: { case: "unload", value: { instanceId: "sess-1" } } }));
    expect((await next(s, "result")).event.value).toMatchObject({ commandId: 4n, ok: false, errorCode: "not_found" });
    s.abort.abort();
  });

  it("refuses a load that does not fit in the memory it offers, naming the need and what is free", async () => {
    const s = open(6n);
    await next(s, "status");
    // 32768 tokens of context for 64 sequences (over a GiB of cache): far more than the 64 MiB this worker offers.
    s.requests.push(create(SessionRequestSchema, { commandId: 2n, command: { case: "load", value: { spec: { ...spec("sess-huge"), llamaCpp: { contextSize: 32768, sequences: 64 } } } } }));
    const huge = (await next(s, "result")).event.value;
    expect(huge).toMatchObject({ ok: false, errorCode: "resource_exhausted" });
    expect((huge as { errorMessage: string }).errorMessage).toMatch(/needs about \d+ MiB; worker session-w has \d+ MiB free of 64 MiB/);
    expect(registry.snapshot().map((i) => i.instanceId)).not.toContain("sess-huge");
    s.requests.push(create(SessionRequestSchema, { commandId: 3n, command: { case: "load", value: { spec: { ...spec("sess-x"), source: "nothere.gguf" } } } }));
    const missing = (await next(s, "result")).event.value as { ok: boolean; errorCode: string; errorMessage: string };
    expect(missing).toMatchObject({ ok: false, errorCode: "failed_precondition" });
    expect(missing.errorMessage).toMatch(/'source' is not an allowed model source on worker session-w/);
    expect(running.worker.list()).toEqual([]);
    s.abort.abort();
  });

  it("fences deposed leaders: a lower term is refused, and a higher term ends the older session", async () => {
    const older = open(10n);
    await next(older, "status");
    const newer = open(11n);
    await next(newer, "status");
    await expect(next(older, "status")).rejects.toSatisfy((err: unknown) => ConnectError.from(err).code === Code.FailedPrecondition && /term 10 is deposed by term 11/.test(String(err)));
    const stale = open(9n);
    await expect(next(stale, "status")).rejects.toSatisfy((err: unknown) => ConnectError.from(err).code === Code.FailedPrecondition && /term 9 is deposed/.test(String(err)));
    newer.abort.abort();
  });

  it("requires 'open' first", async () => {
    const requests = createAsyncQueue<SessionRequest>();
    requests.push(create(SessionRequestSchema, { commandId: 1n, command: { case: "unload", value: { instanceId: "x" } } }));
    const it = client.session(requests)[Symbol.asyncIterator]();
    await expect(it.next()).rejects.toSatisfy((err: unknown) => ConnectError.from(err).code === Code.InvalidArgument);
  });
});
