// A stock @grpc/grpc-js client, built at run time from proto/ with @grpc/proto-loader, against a real
// in-process worker: checks that the worker speaks plain gRPC (HTTP/2) to clients that are not Connect.
import { dirname, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InstanceSpecSchema } from "../src/gen/smmf/v1/instance_pb.js";
import { createLogger } from "../src/telemetry/createLogger.js";
import { startWorker, type RunningWorker } from "../src/worker/startWorker.js";
import { projectRoot, testModelPath } from "./helpers/testModel.js";

const MODEL = "stories260K";
const PROTO_DIR = resolve(projectRoot, "proto");

// Plain JSON shapes as proto-loader produces them (keepCase, longs and enums as strings, defaults, oneofs).
interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}
interface GenerateDone {
  finish_reason: string;
  usage: Usage | null;
  instance_id: string;
  engine_time_ms: number;
}
interface GenerateResponse {
  kind: "delta" | "done";
  delta?: { pieces: string[] } | null;
  done?: GenerateDone | null;
}
interface InstanceJson {
  instance_id: string;
  model: string;
  engine: string;
  worker_id: string;
  address: string;
  state: string;
  max_concurrency: number;
  in_flight: number;
  context_size: number;
  embedding_size: number;
}

type Unary<Req, Res> = (req: Req, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

interface InferenceClient extends grpc.Client {
  Generate(options?: grpc.CallOptions): grpc.ClientDuplexStream<object, GenerateResponse>;
  Embed: Unary<object, { embeddings: { values: number[] }[]; usage: Usage; instance_id: string }>;
  CountTokens: Unary<object, { token_count: number; context_size: number }>;
}
interface WorkerClient extends grpc.Client {
  ListInstances: Unary<object, { instances: InstanceJson[] }>;
  LoadInstance: Unary<object, { instance: InstanceJson }>;
  UnloadInstance: Unary<object, object>;
  Health: Unary<object, { status: string; worker_id: string; instance_count: number }>;
}

function loadClients(address: string): { inference: InferenceClient; worker: WorkerClient } {
  const definition = protoLoader.loadSync(["smmf/v1/inference.proto", "smmf/v1/worker.proto"], {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as any;
  const credentials = grpc.credentials.createInsecure();
  return {
    inference: new pkg.smmf.v1.InferenceService(address, credentials) as InferenceClient,
    worker: new pkg.smmf.v1.WorkerService(address, credentials) as WorkerClient,
  };
}

/** A unary call as a promise, with a deadline so that a hung server fails the test instead of timing it out. */
function unary<Req, Res>(client: grpc.Client, method: Unary<Req, Res>, req: Req, timeoutMs = 20_000): Promise<Res> {
  return new Promise((resolvePromise, reject) => {
    method.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolvePromise(res as Res)));
  });
}

/** What a unary call failed with; fails the test when it succeeded. */
async function unaryError<Req, Res>(client: grpc.Client, method: Unary<Req, Res>, req: Req): Promise<grpc.ServiceError> {
  try {
    const res = await unary(client, method, req);
    throw new Error(`expected the call to fail, got ${JSON.stringify(res)}`);
  } catch (err) {
    if (typeof (err as grpc.ServiceError).code !== "number") throw err;
    return err as grpc.ServiceError;
  }
}

interface GenerateResult {
  deltas: { pieces: string[] }[];
  done: GenerateDone | undefined;
  error: grpc.ServiceError | undefined;
  /** Messages that came after `done` (there must be none). */
  afterDone: number;
}

/**
 * Runs one Generate call: writes `start` and half-closes (unless `cancelAfterDeltas` is set, in which case it
 * writes `cancel` after that many deltas and then half-closes). Resolves when the call ends, with or without error.
 */
function generate(client: InferenceClient, start: object, options: { cancelAfterDeltas?: number; timeoutMs?: number } = {}): Promise<GenerateResult> {
  return new Promise((resolvePromise) => {
    const call = client.Generate({ deadline: Date.now() + (options.timeoutMs ?? 20_000) });
    const result: GenerateResult = { deltas: [], done: undefined, error: undefined, afterDone: 0 };
    let cancelled = false;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      resolvePromise(result);
    };
    call.on("data", (msg: GenerateResponse) => {
      if (result.done) result.afterDone++;
      if (msg.kind === "delta" && msg.delta) {
        result.deltas.push(msg.delta);
        if (options.cancelAfterDeltas !== undefined && !cancelled && result.deltas.length >= options.cancelAfterDeltas) {
          cancelled = true;
          call.write({ cancel: {} });
          call.end();
        }
      } else if (msg.kind === "done" && msg.done) {
        result.done = msg.done;
      }
    });
    call.on("error", (err: grpc.ServiceError) => {
      result.error = err;
      finish();
    });
    // 'status' comes after the last message and also for successful calls ('end' may race with 'error').
    call.on("status", (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) finish();
    });
    call.write({ start });
    if (options.cancelAfterDeltas === undefined) call.end();
  });
}

function smmfCode(err: grpc.ServiceError): string | undefined {
  const value = err.metadata?.get("smmf-error-code")[0];
  return value === undefined ? undefined : String(value);
}

describe("a stock grpc-js client against a worker", () => {
  let running: RunningWorker;
  let inference: InferenceClient;
  let workerClient: WorkerClient;
  let instanceId: string;
  let contextSize: number;
  /** The worker's log lines (also passed on to stderr). */
  const logLines: string[] = [];

  beforeAll(async () => {
    running = await startWorker({
      host: "127.0.0.1",
      port: 0,
      logger: createLogger("warn", "smmf", (line) => {
        logLines.push(line);
        process.stderr.write(line);
      }),
      engineDefaults: { threads: 1, gpu: false },
      modelDir: dirname(testModelPath()),
    });
    const instance = await running.worker.load(
      create(InstanceSpecSchema, {
        model: MODEL,
        engine: "llama.cpp",
        source: testModelPath(),
        llamaCpp: { sequences: 2, threads: 1, embeddings: true },
      }),
    );
    instanceId = instance.instanceId;
    contextSize = instance.contextSize;
    ({ inference, worker: workerClient } = loadClients(`127.0.0.1:${running.port}`));
  });

  afterAll(async () => {
    inference?.close();
    workerClient?.close();
    await running?.close();
  });

  describe("InferenceService.Generate", () => {
    it("streams deltas and ends with done: length, usage matching the deltas", async () => {
      const r = await generate(inference, { model: MODEL, prompt: "Once upon a time", params: { max_tokens: 20, seed: 1, temperature: 0.5 } });
      expect(r.error).toBeUndefined();
      expect(r.done).toBeDefined();
      expect(r.afterDone).toBe(0);
      const done = r.done!;
      expect(done.finish_reason).toBe("FINISH_REASON_LENGTH");
      expect(done.usage?.completion_tokens).toBe(20);
      expect(done.usage?.prompt_tokens).toBeGreaterThan(0);
      expect(done.instance_id).toBe(instanceId);
      expect(done.engine_time_ms).toBeGreaterThan(0);
      expect(r.deltas.reduce((sum, d) => sum + d.pieces.length, 0)).toBe(20);
      expect(r.deltas.map((d) => d.pieces.join("")).join("")).not.toBe("");
    });

    it("accepts chat input", async () => {
      const chat = {
        messages: [
          { role: "system", content: "You tell short stories." },
          { role: "user", content: "Tell me about a cat." },
        ],
      };
      const r = await generate(inference, { model: MODEL, chat, params: { max_tokens: 12, seed: 2, temperature: 0 } });
      expect(r.error).toBeUndefined();
      const done = r.done!;
      expect(done).toBeDefined();
      expect(["FINISH_REASON_LENGTH", "FINISH_REASON_STOP"]).toContain(done.finish_reason);
      // The prompt is the chat as the model's template renders it (CountTokens renders it the same way).
      const counted = await unary(inference, inference.CountTokens, { model: MODEL, chat });
      expect(done.usage?.prompt_tokens).toBe(counted.token_count);
      expect(done.usage?.completion_tokens).toBeGreaterThan(0);
      expect(done.usage?.completion_tokens).toBeLessThanOrEqual(12);
      expect(done.usage?.completion_tokens).toBe(r.deltas.reduce((sum, d) => sum + d.pieces.length, 0));
      expect(r.deltas.map((d) => d.pieces.join("")).join("")).not.toBe("");
    });

    it("stops on a cancel message and ends with done: cancelled", async () => {
      // As many tokens as the context allows, so that the model cannot finish before the cancel arrives.
      const count = await unary(inference, inference.CountTokens, { model: MODEL, prompt: "Once upon a time" });
      const maxTokens = Math.min(1500, contextSize - count.token_count);
      expect(maxTokens).toBeGreaterThan(100);
      // temperature 2 with min-p/top-k off keeps the tiny model from ending its story early.
      const r = await generate(
        inference,
        { model: MODEL, prompt: "Once upon a time", params: { max_tokens: maxTokens, seed: 7, temperature: 2, top_k: 0, top_p: 1 } },
        { cancelAfterDeltas: 3 },
      );
      expect(r.error).toBeUndefined();
      const done = r.done!;
      expect(done).toBeDefined();
      expect(done.finish_reason).toBe("FINISH_REASON_CANCELLED");
      expect(done.usage?.completion_tokens).toBeGreaterThanOrEqual(3);
      expect(done.usage?.completion_tokens).toBeLessThan(maxTokens / 2);
    });

    it("frees the sequence when the client cancels the call (RST_STREAM)", async () => {
      const logsBefore = logLines.length;
      const code = await new Promise<number>((resolvePromise) => {
        const call = inference.Generate({ deadline: Date.now() + 20_000 });
        let deltas = 0;
        call.on("data", (msg: GenerateResponse) => {
          if (msg.kind === "delta" && ++deltas === 3) call.cancel();
        });
        call.on("error", (err: grpc.ServiceError) => resolvePromise(err.code));
        call.on("status", (s: grpc.StatusObject) => s.code === grpc.status.OK && resolvePromise(s.code));
        call.write({ start: { model: MODEL, prompt: "Once upon a time", params: { max_tokens: 1500, seed: 3, temperature: 2 } } });
      });
      expect(code).toBe(grpc.status.CANCELLED);
      // The worker notices the reset and gives the sequence back.
      await expect.poll(async () => (await unary(workerClient, workerClient.ListInstances, {})).instances[0].in_flight, { timeout: 5_000, interval: 20 }).toBe(0);
      // A client going away is not a server error: nothing logged by the time a whole generation after it is over.
      const after = await generate(inference, { model: MODEL, prompt: "Once", params: { max_tokens: 3, temperature: 0 } });
      expect(after.error).toBeUndefined();
      expect(after.done).toBeDefined();
      expect(logLines.slice(logsBefore).filter((l) => l.includes('"level":"error"'))).toEqual([]);
    });

    it("runs as many generations at once as the instance has sequences (2); a third waits for one of them to end", async () => {
      // Two generations that only a cancel ends (as many tokens as the context allows, the model kept from
      // ending its story early), and a third, short one.
      const count = await unary(inference, inference.CountTokens, { model: MODEL, prompt: "Once upon a time" });
      const long = { model: MODEL, prompt: "Once upon a time", params: { max_tokens: contextSize - count.token_count, seed: 7, temperature: 2, top_k: 0, top_p: 1 } };
      /** What happened, in the order this process saw it. */
      const log: string[] = [];
      const open = (name: string, start: object) => {
        const call = inference.Generate({ deadline: Date.now() + 30_000 });
        let deltas = 0;
        let firstDelta!: () => void;
        const started = new Promise<void>((r) => (firstDelta = r));
        const ended = new Promise<GenerateDone | undefined>((resolvePromise, reject) => {
          let done: GenerateDone | undefined;
          call.on("data", (msg: GenerateResponse) => {
            if (msg.kind === "delta" && ++deltas === 1) {
              log.push(`${name} first delta`);
              firstDelta();
            }
            if (msg.kind === "done") {
              done = msg.done ?? undefined;
              log.push(`${name} done`);
            }
          });
          call.on("error", reject);
          call.on("status", (st: grpc.StatusObject) => st.code === grpc.status.OK && resolvePromise(done));
        });
        call.write({ start });
        return { started, ended, deltas: () => deltas, cancel: () => (call.write({ cancel: {} }), call.end()) };
      };
      const a = open("a", long);
      const b = open("b", long);
      await Promise.all([a.started, b.started]);
      // Both stream at once: each has sent a delta and neither has ended; the worker has both in flight.
      expect(log.filter((l) => l.endsWith("done"))).toEqual([]);
      expect((await unary(workerClient, workerClient.ListInstances, {})).instances[0].in_flight).toBe(2);
      const c = open("c", { model: MODEL, prompt: "Once upon a time", params: { max_tokens: 5, temperature: 0 } });
      // While b streams on (ten more deltas), c gets nothing: no sequence is free.
      const bAtOpen = b.deltas();
      await expect.poll(() => b.deltas(), { timeout: 10_000, interval: 5 }).toBeGreaterThanOrEqual(bAtOpen + 10);
      expect(c.deltas()).toBe(0);
      a.cancel();
      expect((await a.ended)?.finish_reason).toBe("FINISH_REASON_CANCELLED");
      expect((await c.ended)?.finish_reason).toBe("FINISH_REASON_LENGTH");
      b.cancel();
      expect((await b.ended)?.finish_reason).toBe("FINISH_REASON_CANCELLED");
      // c got its first token only once a had let go of its sequence; b ran throughout.
      expect(log.indexOf("c first delta")).toBeGreaterThan(log.indexOf("a done"));
      expect(log.indexOf("b done")).toBeGreaterThan(log.indexOf("c done"));
    });

    it("gives the same text on every sequence for the same seed, prompt and settings", async () => {
      const start = { model: MODEL, prompt: "Once upon a time", params: { max_tokens: 10, seed: 1, temperature: 0.5 } };
      const results = await Promise.all([generate(inference, start), generate(inference, start), generate(inference, start)]);
      for (const r of results) {
        expect(r.error).toBeUndefined();
        expect(r.done?.finish_reason).toBe("FINISH_REASON_LENGTH");
        expect(r.done?.usage?.completion_tokens).toBe(10);
      }
      // Same seed, same prompt, same settings: the same text on every sequence.
      const texts = results.map((r) => r.deltas.map((d) => d.pieces.join("")).join(""));
      expect(new Set(texts).size).toBe(1);
    });

    it("answers NOT_FOUND for an unknown model", async () => {
      const r = await generate(inference, { model: "no-such-model", prompt: "hi" });
      expect(r.done).toBeUndefined();
      expect(r.error?.code).toBe(grpc.status.NOT_FOUND);
      expect(smmfCode(r.error!)).toBe("model_not_found");
    });

    it("answers INVALID_ARGUMENT with smmf-error-code context_length_exceeded for an over-long prompt", async () => {
      const r = await generate(inference, { model: MODEL, prompt: "hello ".repeat(5000) });
      expect(r.done).toBeUndefined();
      expect(r.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(smmfCode(r.error!)).toBe("context_length_exceeded");
      expect(r.error?.details).toMatch(/maximum context length/);
    });

    it("answers INVALID_ARGUMENT for an out-of-range temperature", async () => {
      const r = await generate(inference, { model: MODEL, prompt: "hi", params: { temperature: 5 } });
      expect(r.done).toBeUndefined();
      expect(r.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(smmfCode(r.error!)).toBe("invalid_argument");
      expect(r.error?.metadata.get("smmf-error-param")[0]).toBe("temperature");
    });

    it("answers INVALID_ARGUMENT when the first message is not start", async () => {
      const r = await new Promise<grpc.ServiceError | undefined>((resolvePromise) => {
        const call = inference.Generate({ deadline: Date.now() + 10_000 });
        call.on("data", () => undefined);
        call.on("error", (err: grpc.ServiceError) => resolvePromise(err));
        call.on("status", (s: grpc.StatusObject) => s.code === grpc.status.OK && resolvePromise(undefined));
        call.write({ cancel: {} });
        call.end();
      });
      expect(r?.code).toBe(grpc.status.INVALID_ARGUMENT);
    });
  });

  describe("InferenceService.Embed and CountTokens", () => {
    it("embeds each input as a 64-float vector", async () => {
      const res = await unary(inference, inference.Embed, { model: MODEL, inputs: ["hello", "world"] });
      expect(res.embeddings).toHaveLength(2);
      for (const e of res.embeddings) {
        expect(e.values).toHaveLength(64);
        expect(e.values.every((v) => Number.isFinite(v))).toBe(true);
      }
      expect(res.embeddings[0].values).not.toEqual(res.embeddings[1].values);
      expect(res.usage.prompt_tokens).toBeGreaterThan(0);
      expect(res.instance_id).toBe(instanceId);
    });

    it("answers NOT_FOUND for embeddings of an unknown model", async () => {
      const err = await unaryError(inference, inference.Embed, { model: "no-such-model", inputs: ["x"] });
      expect(err.code).toBe(grpc.status.NOT_FOUND);
    });

    it("counts prompt tokens and reports the context size", async () => {
      const res = await unary(inference, inference.CountTokens, { model: MODEL, prompt: "Once upon a time there was a cat." });
      expect(res.token_count).toBeGreaterThan(0);
      expect(res.context_size).toBe(contextSize);
      expect(res.context_size).toBeGreaterThan(0);
      const chat = await unary(inference, inference.CountTokens, { model: MODEL, chat: { messages: [{ role: "user", content: "Hi" }] } });
      expect(chat.token_count).toBeGreaterThan(0);
    });
  });

  describe("WorkerService", () => {
    it("lists the loaded instance as online", async () => {
      const res = await unary(workerClient, workerClient.ListInstances, {});
      expect(res.instances).toHaveLength(1);
      const inst = res.instances[0];
      expect(inst.instance_id).toBe(instanceId);
      expect(inst.model).toBe(MODEL);
      expect(inst.engine).toBe("llama.cpp");
      expect(inst.state).toBe("INSTANCE_STATE_ONLINE");
      expect(inst.context_size).toBe(contextSize);
      expect(inst.context_size).toBeGreaterThan(0);
      expect(inst.embedding_size).toBe(64);
      expect(inst.max_concurrency).toBe(2);
      expect(inst.worker_id).toBe(running.worker.id);
      expect(inst.address).toBe(running.address);
    });

    it("reports health as serving", async () => {
      const res = await unary(workerClient, workerClient.Health, {});
      expect(res.status).toBe("STATUS_SERVING");
      expect(res.worker_id).toBe(running.worker.id);
      expect(res.instance_count).toBe(1);
    });

    it("fails LoadInstance for a missing file with FAILED_PRECONDITION and keeps serving", async () => {
      const err = await unaryError(workerClient, workerClient.LoadInstance, {
        spec: { model: "missing", engine: "llama.cpp", source: "/nonexistent/missing.gguf", llama_cpp: { sequences: 1, threads: 1 } },
      });
      expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(smmfCode(err)).toBe("failed_precondition");

      const health = await unary(workerClient, workerClient.Health, {});
      expect(health.status).toBe("STATUS_SERVING");
      expect(health.instance_count).toBe(1);
      const list = await unary(workerClient, workerClient.ListInstances, {});
      expect(list.instances.map((i) => i.instance_id)).toEqual([instanceId]);
      const r = await generate(inference, { model: MODEL, prompt: "Once", params: { max_tokens: 3 } });
      expect(r.error).toBeUndefined();
      expect(r.done?.usage?.completion_tokens).toBeGreaterThan(0);
    });

    it("answers NOT_FOUND for UnloadInstance of an unknown id", async () => {
      const err = await unaryError(workerClient, workerClient.UnloadInstance, { instance_id: "no-such-instance" });
      expect(err.code).toBe(grpc.status.NOT_FOUND);
      expect(smmfCode(err)).toBe("not_found");
    });
  });
});
