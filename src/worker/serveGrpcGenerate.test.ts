import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { GenerateRequestSchema, GenerateResponseSchema, InferenceService, type GenerateRequest, type GenerateResponse } from "../gen/smmf/v1/inference_pb.js";
import { GrpcChannel } from "../gateway/GrpcChannel.js";
import { startServer, type RunningServer } from "../net/startServer.js";
import type { CallContext, WorkerInference } from "./createWorkerInferenceService.js";
import { GENERATE_PATH, grpcTimeoutMs } from "./serveGrpcGenerate.js";
import { grpcFrame } from "../net/grpcFrames.js";

const SECRET = "a-cluster-secret-of-enough-length";
const start = (prompt: string) => toBinary(GenerateRequestSchema, create(GenerateRequestSchema, { kind: { case: "start", value: { model: "m", input: { case: "prompt", value: prompt } } } }));

/** A stand-in worker: "slow" streams a delta every 20 ms until its signal aborts; anything else answers one delta and done. */
function fakeInference(seen: { signals: AbortSignal[]; requests: GenerateRequest[] }): WorkerInference {
  return {
    async *generate(requests: AsyncIterable<GenerateRequest>, ctx: CallContext): AsyncGenerator<GenerateResponse> {
      seen.signals.push(ctx.signal);
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      seen.requests.push(first.value);
      const prompt = first.value.kind.case === "start" && first.value.kind.value.input.case === "prompt" ? first.value.kind.value.input.value : "";
      if (prompt === "slow") {
        for (let i = 0; !ctx.signal.aborted; i++) {
          yield create(GenerateResponseSchema, { kind: { case: "delta", value: { pieces: [`t${i}`] } } });
          await new Promise((r) => setTimeout(r, 20));
        }
        return;
      }
      yield create(GenerateResponseSchema, { kind: { case: "delta", value: { pieces: [prompt] } } });
      yield create(GenerateResponseSchema, { kind: { case: "done", value: { instanceId: "i-1" } } });
    },
    embed: () => Promise.reject(new Error("unused")),
    countTokens: () => Promise.reject(new Error("unused")),
    rerank: () => Promise.reject(new Error("unused")),
  };
}

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(seen: { signals: AbortSignal[]; requests: GenerateRequest[] }, readMaxBytes?: number): Promise<string> {
  const inference = fakeInference(seen);
  server = await startServer({ host: "127.0.0.1", port: 0, clusterSecret: SECRET, readMaxBytes, grpcGenerate: inference, routes: (r) => r.service(InferenceService, inference), rest: (_req, res) => res.end() });
  return `http://127.0.0.1:${server.port}`;
}

async function collect(channel: GrpcChannel, request: Uint8Array, metadata?: Record<string, string>, signal = new AbortController().signal): Promise<number> {
  let n = 0;
  for await (const _ of channel.call(GENERATE_PATH, grpcFrame(request), signal, metadata)) n++;
  return n;
}

describe("the worker's gRPC Generate handler", () => {
  it("reads grpc-timeout in every unit, and nothing that is not one", () => {
    expect(grpcTimeoutMs("2H")).toBe(7_200_000);
    expect(grpcTimeoutMs("3M")).toBe(180_000);
    expect(grpcTimeoutMs("5S")).toBe(5_000);
    expect(grpcTimeoutMs("100m")).toBe(100);
    expect(grpcTimeoutMs("2500u")).toBe(2.5);
    expect(grpcTimeoutMs("1000000n")).toBe(1);
    for (const bad of [undefined, "", "5", "5s", "123456789S", "-1S", "1.5S"]) expect(grpcTimeoutMs(bad)).toBeUndefined();
  });

  it("answers a call with the cluster credential, and refuses one without it (UNAUTHENTICATED) before it runs", async () => {
    const seen = { signals: [], requests: [] };
    const channel = new GrpcChannel(await serve(seen), { headers: { "smmf-cluster-credential": SECRET } });
    expect(await collect(channel, start("hi"))).toBe(2);
    const stranger = new GrpcChannel(`http://127.0.0.1:${server!.port}`);
    const err = await collect(stranger, start("hi")).catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    expect((err as ConnectError).metadata.get("smmf-error-code")).toBe("invalid_api_key");
    expect(seen.requests).toHaveLength(1);
    channel.close();
    stranger.close();
  });

  it("refuses a message that is not a GenerateRequest (INVALID_ARGUMENT) and one over the size limit (RESOURCE_EXHAUSTED)", async () => {
    const seen = { signals: [], requests: [] };
    const channel = new GrpcChannel(await serve(seen, 1024), { headers: { "smmf-cluster-credential": SECRET } });
    const garbage = await collect(channel, Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f])).catch((e: unknown) => e);
    expect((garbage as ConnectError).code).toBe(Code.InvalidArgument);
    const big = await collect(channel, start("x".repeat(2048))).catch((e: unknown) => e);
    expect((big as ConnectError).code).toBe(Code.ResourceExhausted);
    expect(seen.requests).toHaveLength(0);
    channel.close();
  });

  it("ends a call past its grpc-timeout with DEADLINE_EXCEEDED and stops the generation", async () => {
    const seen = { signals: [] as AbortSignal[], requests: [] };
    const channel = new GrpcChannel(await serve(seen), { headers: { "smmf-cluster-credential": SECRET } });
    const err = await collect(channel, start("slow"), { "grpc-timeout": "150m" }).catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.DeadlineExceeded);
    expect(seen.signals[0].aborted).toBe(true);
    channel.close();
  });

  it("stops the generation when the caller resets its stream", async () => {
    const seen = { signals: [] as AbortSignal[], requests: [] };
    const url = await serve(seen);
    const session = http2.connect(url);
    const stream = session.request({ ":method": "POST", ":path": GENERATE_PATH, "content-type": "application/grpc", te: "trailers", "smmf-cluster-credential": SECRET });
    const body = start("slow");
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    stream.end(frame);
    await new Promise((r) => stream.once("data", r));
    const aborted = new Promise((r) => seen.signals[0].addEventListener("abort", r));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await aborted;
    expect(seen.signals[0].aborted).toBe(true);
    session.close();
  });
});
