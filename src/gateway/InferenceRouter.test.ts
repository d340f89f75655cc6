import http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { GenerateResponseSchema, GenerateStartSchema, type GenerateResponse } from "../gen/smmf/v1/inference_pb.js";
import { InstanceSchema, InstanceState } from "../gen/smmf/v1/instance_pb.js";
import { MemoryRegistry } from "../registry/MemoryRegistry.js";
import { createLogger } from "../telemetry/createLogger.js";
import { InferenceRouter } from "./InferenceRouter.js";

function frame(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

/** A worker that answers every Generate with one delta and done; `stop()` drops its connections (a crash), `start()` listens again on the same port. */
function fakeWorker() {
  let server: http2.Http2Server | undefined;
  const sockets = new Set<Socket>();
  let port = 0;
  return {
    get address() {
      return `http://127.0.0.1:${port}`;
    },
    async start(): Promise<void> {
      server = http2.createServer();
      server.on("connection", (socket: Socket) => {
        sockets.add(socket);
        socket.once("close", () => sockets.delete(socket));
      });
      server.on("stream", (stream) => {
        stream.on("data", () => undefined);
        stream.on("end", () => {
          stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
          stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
          stream.write(frame(toBinary(GenerateResponseSchema, create(GenerateResponseSchema, { kind: { case: "delta", value: { pieces: ["ok"], promptTokens: 1 } } }))));
          stream.end(frame(toBinary(GenerateResponseSchema, create(GenerateResponseSchema, { kind: { case: "done", value: { usage: { promptTokens: 1, completionTokens: 1 } } } }))));
        });
      });
      await new Promise<void>((r) => server!.listen(port, "127.0.0.1", r));
      port = (server!.address() as AddressInfo).port;
    },
    async stop(): Promise<void> {
      const closed = new Promise<void>((r) => server!.close(() => r()));
      // As a crash: the connections just go (no GOAWAY).
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function answer(router: InferenceRouter): Promise<GenerateResponse[]> {
  const out: GenerateResponse[] = [];
  const start = create(GenerateStartSchema, { model: "m", input: { case: "prompt", value: "x" } });
  for await (const r of router.generate(start, new AbortController().signal)) out.push(r);
  return out;
}

describe("InferenceRouter and a worker's lost connection", () => {
  it("a request that comes while the only instance's connection is being restored waits for it, and is answered", async () => {
    const worker = fakeWorker();
    await worker.start();
    const registry = new MemoryRegistry();
    await registry.register(create(InstanceSchema, { instanceId: "m-1", model: "m", address: worker.address, state: InstanceState.ONLINE, maxConcurrency: 4 }));
    const router = new InferenceRouter(registry, { logger: createLogger("silent"), defaultPolicy: "p2c" });
    cleanup.push(async () => router.close());
    expect((await answer(router)).map((r) => r.kind.case)).toEqual(["delta", "done"]);

    // The worker crashes: its connection is lost, and the instance is not pickable while nothing answers.
    await worker.stop();
    await expect.poll(() => router.isPickable(registry.snapshot()[0]), { timeout: 5_000, interval: 20 }).toBe(false);
    // A request now waits (no 503 at once) ...
    const pending = answer(router);
    // ... for the worker back on its port and a reconnection that answers.
    await worker.start();
    cleanup.push(() => worker.stop());
    expect((await pending).map((r) => r.kind.case)).toEqual(["delta", "done"]);
    expect(router.isPickable(registry.snapshot()[0])).toBe(true);
  });
});
