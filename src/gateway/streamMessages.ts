import type { UsageListener } from "../auth/KeyAccounting.js";
import type { GenerateDelta, GenerateResponse } from "../gen/smmf/v1/inference_pb.js";
import { toSmmfError, SmmfError } from "../errors/SmmfError.js";
import { GenerationCall, incomplete } from "./GenerationCall.js";
import { sendJson, startSse, writeSseEvents, type AnyResponse } from "../net/sse.js";
import { stopReasonOf, toolInput } from "./anthropicMessages.js";
import type { InferenceRouter } from "./InferenceRouter.js";
import type { RequestObservation } from "./RequestObservation.js";
import { Assembler, observeDelta, usageOf, type Done, type GenerationRequest } from "./streamGeneration.js";

type Event = { type: string } & Record<string, unknown>;

/** Anthropic's usage object: input and output tokens, and the prompt tokens read from the cache. */
function usageJson(done: Done) {
  const usage = usageOf(done);
  return { input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens, cache_read_input_tokens: usage.prompt_tokens_details.cached_tokens, cache_creation_input_tokens: 0 };
}

/**
 * The content blocks of a stream as Anthropic streams them: text goes into a text block; each tool call opens
 * a tool_use block whose input arrives as input_json_delta pieces; a block is stopped when the next one starts.
 */
class Blocks {
  private open: "text" | "tool" | undefined;
  private index = -1;
  /** Whether the answer has a tool_use block. */
  toolUse = false;

  /** The events one delta of the answer makes. */
  delta(delta: GenerateDelta): Event[] {
    const events: Event[] = [];
    const text = delta.pieces.join("");
    if (text !== "") {
      if (this.open !== "text") this.start(events, { type: "text", text: "" }, "text");
      events.push({ type: "content_block_delta", index: this.index, delta: { type: "text_delta", text } });
    }
    for (const call of delta.toolCalls) {
      if (call.id) {
        this.start(events, { type: "tool_use", id: call.id, name: call.name, input: {} }, "tool");
        this.toolUse = true;
      }
      if (call.arguments && this.open === "tool") events.push({ type: "content_block_delta", index: this.index, delta: { type: "input_json_delta", partial_json: call.arguments } });
    }
    return events;
  }

  /** Stops the open block, if one is. */
  close(events: Event[]): void {
    if (this.open !== undefined) events.push({ type: "content_block_stop", index: this.index });
    this.open = undefined;
  }

  private start(events: Event[], block: object, kind: "text" | "tool"): void {
    this.close(events);
    this.index++;
    this.open = kind;
    events.push({ type: "content_block_start", index: this.index, content_block: block });
  }
}

/**
 * Runs a generation for POST /v1/messages and answers it as Anthropic does: a message object, or its event
 * stream (message_start, ping, content blocks, message_delta with stop_reason and usage, message_stop). Errors
 * before the first token get a plain HTTP error (thrown to the caller, answered in Anthropic's shape); later
 * ones end the stream with an `error` event. A client that goes away cancels the generation.
 */
export async function streamMessages(router: InferenceRouter, res: AnyResponse, req: GenerationRequest, obs: RequestObservation, onUsage?: UsageListener): Promise<void> {
  const call = new GenerationCall(router, res, req.start, obs);
  const responses = call.responses;
  const model = req.start.model;
  try {
    const first = await call.first();
    const headers: Record<string, string> = { "x-request-id": req.requestId, "x-smmf-instance": call.instanceId };
    if (!req.stream) {
      const assembler = new Assembler(1);
      for (let r: IteratorResult<GenerateResponse> = first; !r.done; r = await responses.next()) {
        const kind = r.value.kind;
        if (kind.case === "delta") {
          assembler.add(kind.value);
          observeDelta(obs, kind.value);
        } else if (kind.case === "done") {
          const done = kind.value;
          const choice = assembler.choices[0];
          const content: object[] = [];
          if (choice.text !== "" || choice.toolCalls.length === 0) content.push({ type: "text", text: choice.text });
          for (const call of choice.toolCalls) content.push({ type: "tool_use", id: call.id, name: call.name, input: toolInput(call.arguments) });
          const usage = usageJson(done);
          const stopReason = stopReasonOf(done.finishReason, done.stopSequence, choice.toolCalls.length > 0);
          sendJson(res, 200, { id: req.requestId, type: "message", role: "assistant", model, content, stop_reason: stopReason, stop_sequence: done.stopSequence || null, usage }, headers);
          onUsage?.(usage.input_tokens, usage.output_tokens);
          return obs.end(200, { usage: { promptTokens: usage.input_tokens, completionTokens: usage.output_tokens, cachedTokens: usage.cache_read_input_tokens }, finishReason: stopReason });
        }
      }
      throw incomplete();
    }
    startSse(res, headers);
    const blocks = new Blocks();
    let inputTokens = first.value.kind.case === "delta" ? first.value.kind.value.promptTokens : 0;
    const opening: Event[] = [
      { type: "message_start", message: { id: req.requestId, type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: inputTokens, output_tokens: 0 } } },
      { type: "ping" },
    ];
    await writeSseEvents(res, opening);
    try {
      for (let r: IteratorResult<GenerateResponse> = first; !r.done; r = await responses.next()) {
        const kind = r.value.kind;
        if (kind.case === "delta") {
          observeDelta(obs, kind.value);
          const events = blocks.delta(kind.value);
          if (events.length > 0) await writeSseEvents(res, events);
        } else if (kind.case === "done") {
          const done = kind.value;
          const usage = usageJson(done);
          inputTokens = usage.input_tokens;
          const stopReason = stopReasonOf(done.finishReason, done.stopSequence, blocks.toolUse);
          const closing: Event[] = [];
          blocks.close(closing);
          closing.push({ type: "message_delta", delta: { stop_reason: stopReason, stop_sequence: done.stopSequence || null }, usage: { output_tokens: usage.output_tokens, input_tokens: inputTokens, cache_read_input_tokens: usage.cache_read_input_tokens } });
          closing.push({ type: "message_stop" });
          await writeSseEvents(res, closing);
          res.end();
          onUsage?.(usage.input_tokens, usage.output_tokens);
          return obs.end(call.cancelled ? 499 : 200, { usage: { promptTokens: usage.input_tokens, completionTokens: usage.output_tokens, cachedTokens: usage.cache_read_input_tokens }, finishReason: stopReason });
        }
      }
      throw incomplete();
    } catch (err) {
      if (call.cancelled) return obs.end(499, { error: new SmmfError("cancelled", "the client went away") });
      const error = toSmmfError(err);
      obs.end(error.httpStatus, { error });
      await writeSseEvents(res, [error.toAnthropic().body]);
      res.end();
    }
  } finally {
    call.finish();
  }
}
