import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  CountTokensResponseSchema,
  EmbedResponseSchema,
  FinishReason,
  GenerateResponseSchema,
  type GenerateResponse,
  InferenceService,
} from "../gen/smmf/v1/inference_pb.js";
import type { GenerationEvent } from "../engines/Engine.js";
import { asConnectError } from "../errors/asConnectError.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";
import { linkSignals } from "../util/linkSignals.js";
import { watchForCancel } from "../util/watchForCancel.js";
import { parseGenerateStart, parseInput } from "./parseGenerateStart.js";
import type { Worker } from "./Worker.js";

const FINISH: Record<string, FinishReason> = { stop: FinishReason.STOP, length: FinishReason.LENGTH, cancelled: FinishReason.CANCELLED };

export function toGenerateResponse(event: GenerationEvent, instanceId: string): GenerateResponse {
  if (event.type === "delta") {
    return create(GenerateResponseSchema, { kind: { case: "delta", value: { text: event.text, tokenCount: event.tokenCount } } });
  }
  return create(GenerateResponseSchema, {
    kind: {
      case: "done",
      value: {
        finishReason: FINISH[event.finishReason],
        usage: { promptTokens: event.promptTokens, completionTokens: event.completionTokens },
        instanceId,
        engineTimeMs: event.engineTimeMs,
      },
    },
  });
}

/** InferenceService as a worker serves it: runs each call on one of its own instances. */
export function createWorkerInferenceService(worker: Worker, logger: Logger): ServiceImpl<typeof InferenceService> {
  return {
    async *generate(requests, ctx) {
      const abort = linkSignals(ctx.signal);
      try {
        const iterator = requests[Symbol.asyncIterator]();
        const first = await iterator.next();
        if (first.done || first.value.kind.case !== "start") {
          throw new SmmfError("invalid_argument", "the first Generate message must be 'start'");
        }
        const start = first.value.kind.value;
        const { input, sampling } = parseGenerateStart(start);
        const hosted = worker.resolve(start.model, start.instanceId);
        watchForCancel(iterator, () => abort.abort());
        for await (const event of hosted.engine.generate(input, sampling, abort.signal)) {
          yield toGenerateResponse(event, hosted.record.instanceId);
        }
      } catch (err) {
        const e = ctx.signal.aborted ? new SmmfError("cancelled", "request cancelled") : toSmmfError(err);
        if (e.code === "internal") logger.error("generate failed", { error: String((err as Error)?.message ?? err) });
        throw asConnectError(e);
      } finally {
        abort.abort();
      }
    },
    async embed(req, ctx) {
      try {
        if (!req.model) throw new SmmfError("invalid_argument", "'model' is required", { param: "model" });
        if (req.inputs.length === 0) throw new SmmfError("invalid_argument", "'input' must not be empty", { param: "input" });
        const hosted = worker.resolve(req.model, req.instanceId);
        const result = await hosted.engine.embed(req.inputs, ctx.signal);
        return create(EmbedResponseSchema, {
          embeddings: result.vectors.map((v) => ({ values: Array.from(v) })),
          usage: { promptTokens: result.promptTokens, completionTokens: 0 },
          instanceId: hosted.record.instanceId,
        });
      } catch (err) {
        throw asConnectError(err);
      }
    },
    async countTokens(req) {
      try {
        if (!req.model) throw new SmmfError("invalid_argument", "'model' is required", { param: "model" });
        const hosted = worker.resolve(req.model, req.instanceId);
        const tokenCount = await hosted.engine.countTokens(parseInput(req.input));
        return create(CountTokensResponseSchema, { tokenCount, contextSize: hosted.engine.info.contextSize });
      } catch (err) {
        throw asConnectError(err);
      }
    },
  };
}
