import type { UsageListener } from "../auth/KeyAccounting.js";
import type { GenerateResponse, GenerateStart } from "../gen/smmf/v1/inference_pb.js";
import { FinishReason } from "../gen/smmf/v1/inference_pb.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { InferenceRouter } from "./InferenceRouter.js";
import type { RequestObservation } from "./RequestObservation.js";
import { sendJson, startSse, writeSse, type AnyResponse } from "../net/sse.js";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** The OpenAI response shapes of one endpoint (chat or text completion). */
export interface CompletionFormat {
  /** First chunk of a stream, if the format has one (chat sends the role). */
  opening?(): unknown;
  chunk(text: string): unknown;
  closing(finishReason: string): unknown;
  usageChunk(usage: Usage): unknown;
  whole(text: string, finishReason: string, usage: Usage): unknown;
}

export interface GenerationRequest {
  start: GenerateStart;
  stream: boolean;
  includeUsage: boolean;
  requestId: string;
}

const FINISH_NAMES: Record<number, string> = { [FinishReason.STOP]: "stop", [FinishReason.LENGTH]: "length", [FinishReason.CANCELLED]: "stop" };

function usageOf(done: Extract<GenerateResponse["kind"], { case: "done" }>["value"]): Usage {
  const prompt = done.usage?.promptTokens ?? 0;
  const completion = done.usage?.completionTokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function incomplete(): SmmfError {
  return new SmmfError("unavailable", "the model instance ended the generation without finishing it");
}

/**
 * Runs a generation for a REST request and answers it as JSON or as server-sent events. Errors before the
 * first token get a plain HTTP error (thrown to the caller); later ones end the stream with an error event.
 * A client that goes away cancels the generation.
 */
export async function streamGeneration(router: InferenceRouter, res: AnyResponse, req: GenerationRequest, format: CompletionFormat, obs: RequestObservation, onUsage?: UsageListener): Promise<void> {
  const abort = new AbortController();
  const onClose = () => abort.abort();
  res.once("close", onClose);
  let responses: AsyncGenerator<GenerateResponse> | undefined;
  try {
    const started = performance.now();
    let instanceId = "";
    const onInstance = (instance: Parameters<RequestObservation["attempt"]>[0], attempt: number) => {
      instanceId = instance.instanceId;
      obs.attempt(instance, attempt);
    };
    responses = router.generate(req.start, abort.signal, onInstance, obs.traceHeaders());
    const first = await responses.next();
    if (first.done) throw incomplete();
    const headers: Record<string, string> = { "x-request-id": req.requestId, "x-smmf-instance": instanceId };
    if (!req.stream) {
      let text = "";
      for (let r: IteratorResult<GenerateResponse> = first; !r.done; r = await responses.next()) {
        const kind = r.value.kind;
        if (kind.case === "delta") {
          text += kind.value.pieces.join("");
          obs.delta(kind.value.pieces);
        } else if (kind.case === "done") {
          // What the gateway hop added: end to end here, less the worker's own time.
          if (kind.value.workerTimeMs > 0) headers["x-smmf-overhead-ms"] = (performance.now() - started - kind.value.workerTimeMs).toFixed(3);
          const finish = FINISH_NAMES[kind.value.finishReason] ?? "stop";
          const usage = usageOf(kind.value);
          sendJson(res, 200, format.whole(text, finish, usage), headers);
          onUsage?.(usage.prompt_tokens, usage.completion_tokens);
          return obs.end(200, { usage: { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens }, finishReason: finish });
        }
      }
      throw incomplete();
    }
    startSse(res, headers);
    const opening = format.opening?.();
    if (opening) await writeSse(res, opening);
    try {
      for (let r: IteratorResult<GenerateResponse> = first; !r.done; r = await responses.next()) {
        const kind = r.value.kind;
        if (kind.case === "delta") {
          obs.delta(kind.value.pieces);
          // One chunk per token, as OpenAI streams (so counting chunks counts tokens), in one write.
          await writeSse(res, kind.value.pieces.map((piece) => format.chunk(piece)));
        } else if (kind.case === "done") {
          const finish = FINISH_NAMES[kind.value.finishReason] ?? "stop";
          const usage = usageOf(kind.value);
          await writeSse(res, format.closing(finish));
          if (req.includeUsage) await writeSse(res, format.usageChunk(usage));
          await writeSse(res, "[DONE]");
          res.end();
          onUsage?.(usage.prompt_tokens, usage.completion_tokens);
          return obs.end(abort.signal.aborted ? 499 : 200, { usage: { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens }, finishReason: finish });
        }
      }
      throw incomplete();
    } catch (err) {
      if (abort.signal.aborted) return obs.end(499, { error: new SmmfError("cancelled", "the client went away") });
      const error = toSmmfError(err);
      // The HTTP status was 200 already; the request counts with its error's status.
      obs.end(error.httpStatus, { error });
      await writeSse(res, error.toOpenAiBody());
      await writeSse(res, "[DONE]");
      res.end();
    }
  } finally {
    void responses?.return(undefined).catch(() => undefined);
    res.off("close", onClose);
    if (!res.writableEnded) abort.abort();
  }
}
