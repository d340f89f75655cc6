import { randomBytes } from "node:crypto";
import type { UsageListener } from "../auth/KeyAccounting.js";
import { FinishReason, type GenerateDelta, type GenerateResponse } from "../gen/smmf/v1/inference_pb.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import { GenerationCall, incomplete } from "./GenerationCall.js";
import { sendJson, startSse, writeSseEvents, type AnyResponse } from "../net/sse.js";
import type { InferenceRouter } from "./InferenceRouter.js";
import type { ChatItem, ResponsesRequest } from "./openaiResponses.js";
import type { RequestObservation } from "./RequestObservation.js";
import type { ResponseStore } from "./ResponseStore.js";
import { observeDelta, usageOf, type Done } from "./streamGeneration.js";

type Json = Record<string, unknown>;
type Event = { type: string } & Json;

const itemId = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;

interface TextItem {
  type: "message";
  id: string;
  text: string;
}
interface CallItem {
  type: "function_call";
  id: string;
  callId: string;
  name: string;
  arguments: string;
}

function itemJson(item: TextItem | CallItem, status: "in_progress" | "completed"): Json {
  if (item.type === "message") {
    return { type: "message", id: item.id, status, role: "assistant", content: status === "completed" ? [{ type: "output_text", text: item.text, annotations: [], logprobs: [] }] : [] };
  }
  return { type: "function_call", id: item.id, call_id: item.callId, name: item.name, arguments: status === "completed" ? item.arguments : "", status };
}

/**
 * The output items of a response, built from the generation's deltas: text goes into a message item (one
 * output_text delta event per token, so that counting deltas counts tokens), each tool call into a
 * function_call item whose arguments arrive as delta events; an item is done when the next one starts. The
 * stream's events are collected as they are made; a response that is not streamed ignores them.
 */
class Output {
  readonly items: (TextItem | CallItem)[] = [];
  private open: TextItem | CallItem | undefined;
  events: Event[] = [];

  delta(delta: GenerateDelta): void {
    for (const piece of delta.pieces) {
      if (this.open?.type !== "message") this.start({ type: "message", id: itemId("msg"), text: "" });
      const item = this.open as TextItem;
      item.text += piece;
      this.events.push({ type: "response.output_text.delta", item_id: item.id, output_index: this.index, content_index: 0, delta: piece, logprobs: [] });
    }
    for (const call of delta.toolCalls) {
      if (call.id) this.start({ type: "function_call", id: itemId("fc"), callId: call.id, name: call.name, arguments: "" });
      const item = this.open;
      if (item?.type !== "function_call" || !call.arguments) continue;
      item.arguments += call.arguments;
      this.events.push({ type: "response.function_call_arguments.delta", item_id: item.id, output_index: this.index, delta: call.arguments });
    }
  }

  /** Ends the open item, if one is. */
  close(): void {
    const item = this.open;
    if (!item) return;
    this.open = undefined;
    const output_index = this.items.indexOf(item);
    if (item.type === "message") {
      const part = { type: "output_text", text: item.text, annotations: [], logprobs: [] };
      this.events.push({ type: "response.output_text.done", item_id: item.id, output_index, content_index: 0, text: item.text, logprobs: [] });
      this.events.push({ type: "response.content_part.done", item_id: item.id, output_index, content_index: 0, part });
    } else {
      this.events.push({ type: "response.function_call_arguments.done", item_id: item.id, output_index, arguments: item.arguments });
    }
    this.events.push({ type: "response.output_item.done", output_index, item: itemJson(item, "completed") });
  }

  /** The output as the response object has it; an answer with nothing at all still has its (empty) message. */
  json(): Json[] {
    if (this.items.length === 0) return [itemJson({ type: "message", id: itemId("msg"), text: "" }, "completed")];
    return this.items.map((item) => itemJson(item, "completed"));
  }

  /** The output as chat messages, for a response that a later one continues. */
  chat(): ChatItem[] {
    const text = this.items.filter((i): i is TextItem => i.type === "message").map((i) => i.text).join("");
    const calls = this.items.filter((i): i is CallItem => i.type === "function_call").map((c) => ({ id: c.callId, type: "function", function: { name: c.name, arguments: c.arguments } }));
    return [{ role: "assistant", content: text, ...(calls.length > 0 ? { tool_calls: calls } : {}) }];
  }

  private get index(): number {
    return this.items.length - 1;
  }

  private start(item: TextItem | CallItem): void {
    this.close();
    this.items.push(item);
    this.open = item;
    this.events.push({ type: "response.output_item.added", output_index: this.index, item: itemJson(item, "in_progress") });
    if (item.type === "message") this.events.push({ type: "response.content_part.added", item_id: item.id, output_index: this.index, content_index: 0, part: { type: "output_text", text: "", annotations: [], logprobs: [] } });
  }
}

function usageJson(done: Done) {
  const u = usageOf(done);
  return { input_tokens: u.prompt_tokens, input_tokens_details: { cached_tokens: u.prompt_tokens_details.cached_tokens }, output_tokens: u.completion_tokens, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: u.total_tokens };
}

/**
 * Runs a generation for POST /v1/responses and answers it as the Responses API does: a response object, or
 * its event stream (response.created, response.in_progress, output items and their parts and deltas,
 * response.completed or response.incomplete, each with a sequence_number). Errors before the first token get a
 * plain HTTP error (thrown to the caller); later ones end the stream with an `error` event. A stored response
 * (`store`, the default) is kept for GET /v1/responses/{id} and previous_response_id.
 */
export async function streamResponses(router: InferenceRouter, res: AnyResponse, req: ResponsesRequest, obs: RequestObservation, store: ResponseStore, owner: string, onUsage?: UsageListener): Promise<void> {
  const { generation } = req;
  const id = generation.requestId;
  const createdAt = Math.floor(Date.now() / 1000);
  const base = { id, object: "response", created_at: createdAt, model: generation.start.model, ...req.echo };
  const call = new GenerationCall(router, res, generation.start, obs);
  const responses = call.responses;
  let sequence = 0;
  const send = (events: Event[]) => writeSseEvents(res, events.map((e) => ({ ...e, sequence_number: sequence++ })));
  try {
    const first = await call.first();
    const headers: Record<string, string> = { "x-request-id": id, "x-smmf-instance": call.instanceId };
    const output = new Output();
    const streaming = generation.stream;
    if (streaming) {
      startSse(res, headers);
      const opening = { ...base, status: "in_progress", error: null, incomplete_details: null, output: [], usage: null };
      await send([{ type: "response.created", response: opening }, { type: "response.in_progress", response: opening }]);
    }
    try {
      for (let r: IteratorResult<GenerateResponse> = first; !r.done; r = await responses.next()) {
        const kind = r.value.kind;
        if (kind.case === "delta") {
          observeDelta(obs, kind.value);
          output.delta(kind.value);
          if (streaming && output.events.length > 0) await send(output.events);
          output.events = [];
        } else if (kind.case === "done") {
          const done = kind.value;
          output.close();
          const usage = usageJson(done);
          const truncated = done.finishReason === FinishReason.LENGTH;
          const response = { ...base, status: truncated ? "incomplete" : "completed", error: null, incomplete_details: truncated ? { reason: "max_output_tokens" } : null, output: output.json(), usage };
          if (req.store) store.put(id, { response, conversation: [...req.conversation, ...output.chat()], owner });
          if (streaming) {
            await send([...output.events, { type: truncated ? "response.incomplete" : "response.completed", response }]);
            res.end();
          } else sendJson(res, 200, response, headers);
          onUsage?.(usage.input_tokens, usage.output_tokens);
          return obs.end(call.cancelled ? 499 : 200, { usage: { promptTokens: usage.input_tokens, completionTokens: usage.output_tokens, cachedTokens: usage.input_tokens_details.cached_tokens }, finishReason: truncated ? "length" : "stop" });
        }
      }
      throw incomplete();
    } catch (err) {
      if (!streaming) throw err;
      if (call.cancelled) return obs.end(499, { error: new SmmfError("cancelled", "the client went away") });
      const error = toSmmfError(err);
      obs.end(error.httpStatus, { error });
      await send([{ type: "error", code: error.code, message: error.message, param: error.param }]);
      res.end();
    }
  } finally {
    call.finish();
  }
}
