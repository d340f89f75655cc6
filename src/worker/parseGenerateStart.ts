import type { ChatInput, GenerateStart, ResponseFormat, SamplingParams, Tool, ToolChoice } from "../gen/smmf/v1/inference_pb.js";
import { ResponseFormat_Type } from "../gen/smmf/v1/inference_pb.js";
import type { ChatTurn, GenerationInput, ResponseFormat as EngineResponseFormat, SamplingOptions, ToolChoice as EngineToolChoice, ToolDefinition } from "../engines/Engine.js";
import { SmmfError } from "../errors/SmmfError.js";

const ROLES: Record<string, ChatTurn["role"]> = { system: "system", developer: "system", user: "user", assistant: "assistant", tool: "tool" };
export const MAX_STOP_SEQUENCES = 4;
/** Most answers of one generation (n), and most log-probability alternatives per token. */
export const MAX_N = 128;
export const MAX_TOP_LOGPROBS = 20;
/** OpenAI's rule for function and schema names. */
export const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

function invalid(param: string, message: string): SmmfError {
  return new SmmfError("invalid_argument", message, { param });
}

function inRange(value: number | undefined, param: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < min || value > max) throw invalid(param, `'${param}' must be between ${min} and ${max}; got ${value}`);
  return value;
}

function jsonObject(text: string, param: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalid(param, `'${param}' is not valid JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid(param, `'${param}' must be a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * Chat messages, with OpenAI's rules for tools: an assistant message's tool calls are each answered by a
 * later `tool` message (before the next user or assistant turn), and a `tool` message answers a call.
 */
export function parseChat(chat: ChatInput | undefined): ChatTurn[] {
  const messages = chat?.messages ?? [];
  if (messages.length === 0) throw invalid("messages", "'messages' must contain at least one message");
  let open = new Map<string, number>();
  const unanswered = () => {
    if (open.size === 0) return;
    const [id, at] = open.entries().next().value as [string, number];
    throw invalid(`messages[${at}].tool_calls`, `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'; '${id}' has none`);
  };
  const turns = messages.map((m, i): ChatTurn => {
    const role = Object.hasOwn(ROLES, m.role) ? ROLES[m.role] : undefined;
    if (!role) throw invalid(`messages[${i}].role`, `messages[${i}].role must be one of system, developer, user, assistant, tool; got '${m.role}'`);
    if (role === "tool") {
      if (!open.has(m.toolCallId)) throw invalid(`messages[${i}].tool_call_id`, `messages[${i}] answers tool call '${m.toolCallId}', which no earlier assistant message made (or which was answered already)`);
      open.delete(m.toolCallId);
      return { role, content: m.content, toolCallId: m.toolCallId, ...(m.name ? { name: m.name } : {}) };
    }
    unanswered();
    const turn: ChatTurn = { role, content: m.content, ...(m.name ? { name: m.name } : {}) };
    if (role === "assistant" && m.toolCalls.length > 0) {
      open = new Map();
      turn.toolCalls = m.toolCalls.map((c, j) => {
        if (!c.id || open.has(c.id)) throw invalid(`messages[${i}].tool_calls[${j}].id`, `messages[${i}].tool_calls[${j}].id must be a unique non-empty string`);
        open.set(c.id, i);
        return { id: c.id, name: c.name, arguments: c.arguments };
      });
    }
    return turn;
  });
  unanswered();
  return turns;
}

function parseTools(tools: readonly Tool[]): ToolDefinition[] {
  const names = new Set<string>();
  return tools.map((t, i) => {
    if (!TOOL_NAME.test(t.name)) throw invalid(`tools[${i}].function.name`, `tools[${i}].function.name must be 1 to 64 letters, digits, '_' or '-'`);
    if (names.has(t.name)) throw invalid(`tools[${i}].function.name`, `tools[${i}].function.name '${t.name}' is declared twice`);
    names.add(t.name);
    return {
      name: t.name,
      ...(t.description ? { description: t.description } : {}),
      ...(t.parametersJson ? { parameters: jsonObject(t.parametersJson, `tools[${i}].function.parameters`) } : {}),
      strict: t.strict,
    };
  });
}

function parseToolChoice(choice: ToolChoice | undefined, tools: readonly ToolDefinition[]): EngineToolChoice | undefined {
  const c = choice?.choice;
  if (!c || c.case === undefined) return undefined;
  if (c.case === "mode") {
    if (c.value !== "auto" && c.value !== "none" && c.value !== "required") throw invalid("tool_choice", `'tool_choice' must be auto, none, required or a function; got '${c.value}'`);
    if (c.value === "required" && tools.length === 0) throw invalid("tool_choice", "'tool_choice' is 'required' but no 'tools' are given");
    return { mode: c.value };
  }
  if (!tools.some((t) => t.name === c.value)) throw invalid("tool_choice", `'tool_choice' names the function '${c.value}', which is not among 'tools'`);
  return { mode: "function", name: c.value };
}

function parseResponseFormat(format: ResponseFormat | undefined): EngineResponseFormat | undefined {
  if (!format) return undefined;
  switch (format.type) {
    case ResponseFormat_Type.UNSPECIFIED:
      return undefined;
    case ResponseFormat_Type.TEXT:
      return { type: "text" };
    case ResponseFormat_Type.JSON_OBJECT:
      return { type: "json_object" };
    case ResponseFormat_Type.JSON_SCHEMA:
      if (!TOOL_NAME.test(format.name)) throw invalid("response_format.json_schema.name", "'response_format.json_schema.name' must be 1 to 64 letters, digits, '_' or '-'");
      return { type: "json_schema", name: format.name, schema: format.schemaJson ? jsonObject(format.schemaJson, "response_format.json_schema.schema") : {}, strict: format.strict };
    default:
      throw invalid("response_format.type", "'response_format.type' is not known");
  }
}

export function parseInput(input: GenerateStart["input"], continuation = ""): GenerationInput {
  const more = continuation ? { continuation } : {};
  if (input.case === "chat") return { kind: "chat", messages: parseChat(input.value), ...more };
  if (input.case === "prompt") return { kind: "prompt", prompt: input.value, ...more };
  throw invalid("messages", "the request needs 'messages' (chat) or 'prompt' (completion)");
}

export function parseSampling(params: SamplingParams | undefined): SamplingOptions {
  const p = params;
  if (!p) return {};
  if (p.maxTokens !== undefined && p.maxTokens < 1) throw invalid("max_tokens", "'max_tokens' must be at least 1");
  if (p.stop.length > MAX_STOP_SEQUENCES) throw invalid("stop", `'stop' takes at most ${MAX_STOP_SEQUENCES} sequences`);
  if (p.stop.some((s) => s.length === 0)) throw invalid("stop", "'stop' sequences must not be empty");
  return {
    maxTokens: p.maxTokens,
    temperature: inRange(p.temperature, "temperature", 0, 2),
    topP: inRange(p.topP, "top_p", 0, 1),
    topK: p.topK,
    seed: p.seed,
    stop: p.stop.length > 0 ? [...p.stop] : undefined,
    frequencyPenalty: inRange(p.frequencyPenalty, "frequency_penalty", -2, 2),
    presencePenalty: inRange(p.presencePenalty, "presence_penalty", -2, 2),
  };
}

/** Checks a GenerateStart and turns it into engine input and sampling options. */
export function parseGenerateStart(start: GenerateStart): { input: GenerationInput; sampling: SamplingOptions } {
  if (!start.model) throw invalid("model", "'model' is required");
  const input = parseInput(start.input, start.continuation);
  const sampling = parseSampling(start.params);
  const tools = parseTools(start.tools);
  if (tools.length > 0 && input.kind !== "chat") throw invalid("tools", "'tools' needs chat messages");
  if (tools.length > 0) input.tools = tools;
  const toolChoice = parseToolChoice(start.toolChoice, tools);
  if (toolChoice) input.toolChoice = toolChoice;
  if (start.parallelToolCalls !== undefined) input.parallelToolCalls = start.parallelToolCalls;
  const responseFormat = parseResponseFormat(start.responseFormat);
  if (responseFormat) input.responseFormat = responseFormat;
  if (start.n > MAX_N) throw invalid("n", `'n' must be at most ${MAX_N}`);
  if (start.n > 1) sampling.n = start.n;
  if (start.topLogprobs > MAX_TOP_LOGPROBS) throw invalid("top_logprobs", `'top_logprobs' must be at most ${MAX_TOP_LOGPROBS}`);
  if (start.logprobs) {
    sampling.logprobs = true;
    sampling.topLogprobs = start.topLogprobs;
  } else if (start.topLogprobs > 0) {
    throw invalid("top_logprobs", "'top_logprobs' requires 'logprobs'");
  }
  if (start.extraJson) sampling.extra = jsonObject(start.extraJson, "extra_json");
  return { input, sampling };
}
