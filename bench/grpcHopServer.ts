// The far end of `npm run bench:gateway`'s gRPC hop floor: the worker's own Generate handler (serveGrpcGenerate,
// through startServer, as a worker serves it) in front of a worker that answers at once (one delta, done), in a
// process of its own. Prints `PORT <n>` when it listens.
import { InferenceService, type GenerateRequest, type GenerateResponse } from "../src/gen/smmf/v1/inference_pb.js";
import { startServer } from "../src/net/startServer.js";
import { deltaResponse, doneResponse, type CallContext, type WorkerInference } from "../src/worker/createWorkerInferenceService.js";
import { readGenerateStart } from "../src/util/watchForCancel.js";

const inference: WorkerInference = {
  async *generate(requests: AsyncIterable<GenerateRequest>, _ctx: CallContext): AsyncGenerator<GenerateResponse> {
    await readGenerateStart(requests[Symbol.asyncIterator]());
    yield deltaResponse(["Hi", "!"], 5);
    yield doneResponse({ type: "done", finishReason: "stop", promptTokens: 5, completionTokens: 2, engineTimeMs: 0 }, "hop-1", 0.01);
  },
  embed: () => Promise.reject(new Error("not served here")),
  countTokens: () => Promise.reject(new Error("not served here")),
  rerank: () => Promise.reject(new Error("not served here")),
};

const server = await startServer({ host: "127.0.0.1", port: 0, grpcGenerate: inference, routes: (r) => r.service(InferenceService, inference), rest: (_req, res) => res.end() });
console.log(`PORT ${server.port}`);
