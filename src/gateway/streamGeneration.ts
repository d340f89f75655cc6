import type { UsageListener } from "../auth/KeyAccounting.js";
import type { GenerateDelta, GenerateResponse, GenerateStart, TokenLogprob } from "../gen/smmf/v1/inference_pb.js";
import { FinishReason } from "../gen/smmf/v1/inference_pb.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { InferenceRouter } from "./InferenceRouter.js";
import type { RequestObservation } from "./RequestObservation.js";
import { sendJson, startSse, writeSse, type AnyResponse } from "../net/sse.js";
import { GenerationCall, incomplete } from "./GenerationCall.js";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** As OpenAI reports it: prompt tokens served from the cache (no evaluation). */
  prompt_tokens_details: { cached_tokens: number };
}

/** One token's log-probability, as OpenAI's chat API shows it. */
export interface LogprobJson {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** A piece of a tool call, as streamed: the first piece of a call has its id and name. */
export interface ToolCallPiece {
  index: number;
  id: string;
  name: string;
  arguments: string;
}

/** One answer, put together from its deltas (a non-streamed response). */
export interface AssembledChoice {
  text: string;
  toolCalls: { id: string; name: string; arguments: string }[];
  logprobs: LogprobJson[];
  refusal: string | null;
  finishReason: string;
}

/** The OpenAI response shapes of one endpoint (chat or text completion). */
export interface CompletionFormat {
  /** First chunk of an answer in a stream, if the format has one (chat sends the role). */
  opening?(index: number): unknown;
  content(index: number, text: string, logprob: LogprobJson | undefined): unknown;
  toolCall?(index: number, call: ToolCallPiece): unknown;
  refusal?(index: number, text: string): unknown;
  closing(index: number, finishReason: string): unknown;
  usageChunk(usage: Usage): unknown;
  whole(choices: AssembledChoice[], usage: Usage): unknown;
}

export interface GenerationRequest {
  start: GenerateStart;
  stream: boolean;
  includeUsage: boolean;
  requestId: string;
  /** Answers asked for (n). */
  choices: number;
  logprobs: boolean;
}

const FINISH_NAMES: Record<number, string> = {
  [FinishReason.STOP]: "stop",
  [FinishReason.LENGTH]: "length",
  [FinishReason.CANCELLED]: "stop",
  [FinishReason.TOOL_CALLS]: "tool_calls",
  [FinishReason.CONTENT_FILTER]: "content_filter",
};

export type Done = Extract<GenerateResponse["kind"], { case: "done" }>["value"];

export function usageOf(done: Done): Usage {
  const prompt = done.usage?.promptTokens ?? 0;
  const completion = done.usage?.completionTokens ?? 0;
  const cached = Math.min(prompt, done.usage?.cachedPromptTokens ?? 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: cached } };
}

/** Each answer's finish reason, by index. */
function finishReasons(done: Done, choices: number): string[] {
  const first = FINISH_NAMES[done.finishReason] ?? "stop";
  return Array.from({ length: choices }, (_, i) => (i === 0 ? first : (FINISH_NAMES[done.choiceFinishReasons[i]] ?? first)));
}

const toBytes = (b: Uint8Array) => Array.from(b);

export function logprobJson(lp: TokenLogprob): LogprobJson {
  return { token: lp.token, logprob: lp.logprob, bytes: toBytes(lp.bytes), top_logprobs: lp.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: toBytes(t.bytes) })) };
}


/** A delta's tokens for the request's metrics and log (tool calls logged as `[call name] arguments`). */
export function observeDelta(obs: RequestObservation, delta: GenerateDelta): void {
  let other = delta.refusal;
  for (const call of delta.toolCalls) other += (call.name ? `[call ${call.name}] ` : "") + call.arguments;
  obs.delta(delta.pieces, delta.otherTokens, other);
}

/** Puts the answers of a non-streamed request together. */
export class Assembler {
  readonly choices: AssembledChoice[];
  constructor(count: number) {
    this.choices = Array.from({ length: count }, () => ({ text: "", toolCalls: [], logprobs: [], refusal: null, finishReason: "stop" }));
  }

  add(delta: GenerateDelta): void {
    const choice = this.choices[delta.index];
    if (!choice) throw new SmmfError("internal", `the model instance sent answer ${delta.index} of ${this.choices.length}`);
    for (const piece of delta.pieces) choice.text += piece;
    for (const lp of delta.logprobs) choice.logprobs.push(logprobJson(lp));
    for (const call of delta.toolCalls) {
      let assembled = choice.toolCalls[call.index];
      if (!assembled) choice.toolCalls[call.index] = assembled = { id: "", name: "", arguments: "" };
      if (call.id) assembled.id = call.id;
      if (call.name) assembled.name = call.name;
      assembled.arguments += call.arguments;
    }
    if (delta.refusal) choice.refusal = (choice.refusal ?? "") + delta.refusal;
  }
}

/** The SSE chunks of one delta: one per token, as OpenAI streams (so counting chunks counts tokens). */
function deltaChunks(format: CompletionFormat, delta: GenerateDelta, opened: boolean[]): unknown[] {
  const index = delta.index;
  const chunks: unknown[] = [];
  if (format.opening && !opened[index]) {
    opened[index] = true;
    chunks.push(format.opening(index));
  }
  const logprobs = delta.logprobs;
  for (let i = 0; i < delta.pieces.length; i++) chunks.push(format.content(index, delta.pieces[i], logprobs.length > i ? logprobJson(logprobs[i]) : undefined));
  if (format.toolCall) for (const call of delta.toolCalls) chunks.push(format.toolCall(index, call));
  if (delta.refusal && format.refusal) chunks.push(format.refusal(index, delta.refusal));
  return chunks;
}

/**
 * Runs a generation for a REST request and answers it as JSON or as server-sent events. Errors before the
 * first token get a plain HTTP error (thrown to the caller); later ones end the stream with an error event.
 * A client that goes away cancels the generation.
 */
export async function streamGeneration(router: InferenceRouter, res: AnyResponse, req: GenerationRequest, format: CompletionFormat, obs: RequestObservation, onUsage?: UsageListener): Promise<void> {
  const started = performance.now();
  const call = new GenerationCall(router, res, req.start, obs);
  const responses = call.responses;
  try {
    const first = await call.first();
    const headers: Record<string, string> = { "x-request-id": req.requestId, "x-smmf-instance": call.instanceId };
    if (!req.stream) {
      const assembler = new Assembler(req.choices);
      for (let r: IteratorResult<GenerateResponse> = first; !r.done; r = await responses.next()) {
        const kind = r.value.kind;
        if (kind.case === "delta") {
          assembler.add(kind.value);
          observeDelta(obs, kind.value);
        } else if (kind.case === "done") {
          // What the gateway hop added: end to end here, less the worker's own time.
          if (kind.value.workerTimeMs > 0) headers["x-smmf-overhead-ms"] = (performance.now() - started - kind.value.workerTimeMs).toFixed(3);
          const finishes = finishReasons(kind.value, req.choices);
          finishes.forEach((f, i) => (assembler.choices[i].finishReason = f));
          const usage = usageOf(kind.value);
          sendJson(res, 200, format.whole(assembler.choices, usage), headers);
          onUsage?.(usage.prompt_tokens, usage.completion_tokens);
          return obs.end(200, { usage: { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens, cachedTokens: usage.prompt_tokens_details.cached_tokens }, finishReason: finishes[0] });
        }
      }
      throw incomplete();
    }
    startSse(res, headers);
    const opened: boolean[] = [];
    try {
      for (let r: IteratorResult<GenerateResponse> = first; !r.done; r = await responses.next()) {
        const kind = r.value.kind;
        if (kind.case === "delta") {
          observeDelta(obs, kind.value);
          await writeSse(res, deltaChunks(format, kind.value, opened));
        } else if (kind.case === "done") {
          const finishes = finishReasons(kind.value, req.choices);
          const usage = usageOf(kind.value);
          const closing: unknown[] = [];
          finishes.forEach((finish, i) => {
            if (format.opening && !opened[i]) closing.push(format.opening(i));
            closing.push(format.closing(i, finish));
          });
          if (req.includeUsage) closing.push(format.usageChunk(usage));
          closing.push("[DONE]");
          await writeSse(res, closing);
          res.end();
          onUsage?.(usage.prompt_tokens, usage.completion_tokens);
          return obs.end(call.cancelled ? 499 : 200, { usage: { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens, cachedTokens: usage.prompt_tokens_details.cached_tokens }, finishReason: finishes[0] });
        }
      }
      throw incomplete();
    } catch (err) {
      if (call.cancelled) return obs.end(499, { error: new SmmfError("cancelled", "the client went away") });
      const error = toSmmfError(err);
      // The HTTP status was 200 already; the request counts with its error's status.
      obs.end(error.httpStatus, { error });
      await writeSse(res, error.toOpenAiBody());
      await writeSse(res, "[DONE]");
      res.end();
    }
  } finally {
    call.finish();
  }
}
