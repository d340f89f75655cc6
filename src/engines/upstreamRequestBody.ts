import { SmmfError } from "../errors/SmmfError.js";
import type { ChatTurn, GenerationInput, ResponseFormat, SamplingOptions, ToolChoice, ToolDefinition } from "./Engine.js";
import type { ProxyPreset } from "./proxyPresets.js";

/** What the body needs to know of the instance. */
export interface UpstreamBodyOptions {
  /** The model name the upstream knows. */
  model: string;
  preset: ProxyPreset;
  /** The preset's name, for messages. */
  presetName: string;
}

/** A chat message in the OpenAI wire format. */
export interface WireMessage {
  role: string;
  content: string | null;
  name?: string;
  tool_calls?: { id: string; type: "function"; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

function wireMessage(m: ChatTurn): WireMessage {
  const out: WireMessage = { role: m.role, content: m.content };
  if (m.name) out.name = m.name;
  if (m.role === "tool") out.tool_call_id = m.toolCallId ?? "";
  if (m.toolCalls?.length) {
    // An assistant message that only calls tools has no content: OpenAI's own answers say null.
    if (m.content === "") out.content = null;
    out.tool_calls = m.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
  }
  return out;
}

function wireTool(t: ToolDefinition): object {
  const fn: Record<string, unknown> = { name: t.name };
  if (t.description !== undefined) fn.description = t.description;
  if (t.parameters !== undefined) fn.parameters = t.parameters;
  // strict: false is OpenAI's default; only a strict tool says so.
  if (t.strict) fn.strict = true;
  return { type: "function", function: fn };
}

function wireToolChoice(c: ToolChoice): unknown {
  return c.mode === "function" ? { type: "function", function: { name: c.name } } : c.mode;
}

function wireResponseFormat(f: ResponseFormat): object {
  if (f.type === "json_schema") return { type: "json_schema", json_schema: { name: f.name, schema: f.schema, strict: f.strict } };
  return { type: f.type };
}

/**
 * Refuses a request that sets a field the preset does not honour (see ProxyPreset.unsupported) to anything
 * but a neutral value: invalid_argument naming the field, before any request goes out.
 */
export function checkUnsupportedFields(sampling: SamplingOptions, preset: ProxyPreset, presetName: string): void {
  for (const { field, neutral } of preset.unsupported ?? []) {
    const value = field === "n" ? sampling.n : sampling.extra?.[field];
    if (!neutral(value)) throw new SmmfError("invalid_argument", `'${field}' is not supported by the ${presetName} upstream`, { param: field });
  }
}

/**
 * The JSON body of a streamed chat or completions request to an OpenAI-compatible upstream: the input, the
 * sampling options, tools, tool choice, response format, logprobs and n in OpenAI's shapes, and every field
 * SMMF does not interpret (`extra`) as the client sent it. The fields SMMF sets itself win over extra ones
 * of the same name; fields the preset does not honour are left out when neutral (see checkUnsupportedFields,
 * which refuses the others).
 */
export function upstreamRequestBody(input: GenerationInput, sampling: SamplingOptions, options: UpstreamBodyOptions): Record<string, unknown> {
  const { preset } = options;
  const body: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(sampling.extra ?? {})) {
    if (v !== undefined) body[k] = v;
  }
  for (const { field, neutral } of preset.unsupported ?? []) {
    if (Object.hasOwn(body, field) && neutral(body[field])) delete body[field];
  }
  body.model = options.model;
  body.stream = true;
  body.stream_options = { include_usage: true };
  if (input.kind === "chat") {
    const messages = input.messages.map(wireMessage);
    if (input.continuation) {
      messages.push({ role: "assistant", content: input.continuation });
      if (preset.continueFinalMessage) Object.assign(body, { continue_final_message: true, add_generation_prompt: false });
    }
    body.messages = messages;
    delete body.prompt;
    if (input.tools?.length) body.tools = input.tools.map(wireTool);
    if (input.toolChoice) body.tool_choice = wireToolChoice(input.toolChoice);
    if (input.parallelToolCalls !== undefined) body.parallel_tool_calls = input.parallelToolCalls;
  } else {
    body.prompt = input.prompt + (input.continuation ?? "");
    delete body.messages;
  }
  if (input.responseFormat) body.response_format = wireResponseFormat(input.responseFormat);
  if (sampling.maxTokens !== undefined) {
    if (input.kind === "chat" && preset.maxCompletionTokens) {
      body.max_completion_tokens = sampling.maxTokens;
      delete body.max_tokens;
    } else body.max_tokens = sampling.maxTokens;
  }
  if (sampling.temperature !== undefined) body.temperature = sampling.temperature;
  if (sampling.topP !== undefined) body.top_p = sampling.topP;
  if (sampling.topK !== undefined && preset.topK) body.top_k = sampling.topK;
  if (sampling.seed !== undefined) body.seed = sampling.seed;
  if (sampling.stop?.length) body.stop = sampling.stop;
  if (sampling.frequencyPenalty) body.frequency_penalty = sampling.frequencyPenalty;
  if (sampling.presencePenalty) body.presence_penalty = sampling.presencePenalty;
  // n: 0 and 1 both mean one answer; a preset that does not take `n` gets none.
  if (sampling.n !== undefined && sampling.n >= 1 && !(sampling.n === 1 && preset.unsupported?.some((u) => u.field === "n"))) body.n = sampling.n;
  if (sampling.logprobs) {
    if (input.kind === "chat") {
      body.logprobs = true;
      if (sampling.topLogprobs !== undefined) body.top_logprobs = sampling.topLogprobs;
    } else {
      // The legacy completions API takes the number of alternatives per token.
      body.logprobs = sampling.topLogprobs ?? 0;
    }
  }
  return body;
}
