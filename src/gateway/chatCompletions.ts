import { create } from "@bufbuild/protobuf";
import { GenerateStartSchema, ToolCallSchema, type ChatMessage, type ToolCall } from "../gen/smmf/v1/inference_pb.js";
import { parseGenerateStart } from "../worker/parseGenerateStart.js";
import { extraFields, invalidField, optionalBoolean, optionalNumber, requiredString } from "./fields.js";
import { checkMessageCount, DEFAULT_REQUEST_CAPS, PromptChars, type RequestCaps } from "./requestCaps.js";
import { choicesFromBody, samplingFromBody, SAMPLING_FIELDS } from "./samplingFromBody.js";
import { parseResponseFormat, parseToolChoice, parseTools } from "./toolFields.js";
import type { AssembledChoice, CompletionFormat, GenerationRequest, LogprobJson } from "./streamGeneration.js";

/** Message content: a string, or an array of text parts. */
function contentText(content: unknown, i: number): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part, j) => {
        if (typeof part === "object" && part !== null && (part as { type?: unknown }).type === "text" && typeof (part as { text?: unknown }).text === "string") {
          return (part as { text: string }).text;
        }
        throw invalidField(`messages[${i}].content[${j}]`, `messages[${i}].content[${j}] must be a text part; other content types are not supported.`);
      })
      .join("");
  }
  if (content === null || content === undefined) return "";
  throw invalidField(`messages[${i}].content`, `messages[${i}].content must be a string or an array of text parts.`);
}

function parseToolCalls(value: unknown, i: number, chars: PromptChars): ToolCall[] {
  if (value === undefined || value === null) return [];
  const at = `messages[${i}].tool_calls`;
  if (!Array.isArray(value)) throw invalidField(at, `${at} must be an array.`);
  return value.map((call, j) => {
    const c = call as { id?: unknown; type?: unknown; function?: { name?: unknown; arguments?: unknown } } | null;
    if (typeof c !== "object" || c === null) throw invalidField(`${at}[${j}]`, `${at}[${j}] must be an object.`);
    if (typeof c.id !== "string" || c.id.length === 0) throw invalidField(`${at}[${j}].id`, `${at}[${j}].id must be a non-empty string.`);
    if (c.type !== undefined && c.type !== "function") throw invalidField(`${at}[${j}].type`, `${at}[${j}].type must be 'function'.`);
    const fn = c.function;
    if (typeof fn !== "object" || fn === null || typeof fn.name !== "string" || typeof fn.arguments !== "string") {
      throw invalidField(`${at}[${j}].function`, `${at}[${j}].function must have a string 'name' and string 'arguments'.`);
    }
    chars.add(fn.arguments);
    return create(ToolCallSchema, { index: j, id: c.id, name: fn.name, arguments: fn.arguments });
  });
}

/** The messages of a chat body; their count and characters are capped before anything else is done with them. */
function parseMessages(value: unknown, caps: RequestCaps, chars: PromptChars): Omit<ChatMessage, "$typeName">[] {
  if (value === undefined || value === null) throw invalidField("messages", "Missing required parameter: 'messages'.");
  if (!Array.isArray(value)) throw invalidField("messages", "'messages' must be an array.");
  if (value.length === 0) throw invalidField("messages", "'messages' must contain at least one message.");
  checkMessageCount(value.length, caps);
  return value.map((m, i) => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw invalidField(`messages[${i}]`, `messages[${i}] must be an object.`);
    const { role, content, tool_calls, tool_call_id, name } = m as Record<string, unknown>;
    if (typeof role !== "string") throw invalidField(`messages[${i}].role`, `messages[${i}].role must be a string.`);
    if (role === "function") throw invalidField(`messages[${i}].role`, `messages[${i}].role 'function' is deprecated and not supported; use 'tool' messages.`);
    const text = contentText(content, i);
    chars.add(text);
    const toolCalls = role === "assistant" ? parseToolCalls(tool_calls, i, chars) : [];
    if (role !== "assistant" && tool_calls !== undefined && tool_calls !== null) throw invalidField(`messages[${i}].tool_calls`, `messages[${i}].tool_calls is only allowed on assistant messages.`);
    let toolCallId = "";
    if (role === "tool") {
      if (typeof tool_call_id !== "string" || tool_call_id.length === 0) throw invalidField(`messages[${i}].tool_call_id`, `messages[${i}].tool_call_id is required on tool messages.`);
      toolCallId = tool_call_id;
    }
    if (name !== undefined && name !== null && typeof name !== "string") throw invalidField(`messages[${i}].name`, `messages[${i}].name must be a string.`);
    return { role, content: text, toolCalls, toolCallId, name: typeof name === "string" ? name : "" };
  });
}

/** Fields of a chat body that SMMF reads itself; every other field travels in extra_json. */
const CHAT_FIELDS = new Set([
  ...SAMPLING_FIELDS, "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
  "tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs",
]);

/** Reads a /v1/chat/completions body into a GenerationRequest. */
export function parseChatRequest(body: Record<string, unknown>, requestId: string, caps: RequestCaps = DEFAULT_REQUEST_CAPS): GenerationRequest {
  const model = requiredString(body, "model");
  const chars = new PromptChars(caps, "messages");
  const messages = parseMessages(body.messages, caps, chars);
  const tools = parseTools(body.tools, chars);
  const toolChoice = parseToolChoice(body.tool_choice, tools);
  const responseFormat = parseResponseFormat(body.response_format, chars);
  const logprobs = optionalBoolean(body, "logprobs") ?? false;
  const topLogprobs = optionalNumber(body, "top_logprobs", { integer: true, min: 0, max: 20 }) ?? 0;
  if (topLogprobs > 0 && !logprobs) throw invalidField("top_logprobs", "'top_logprobs' requires 'logprobs' to be true.");
  const maxField = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? "max_completion_tokens" : "max_tokens";
  const n = choicesFromBody(body);
  const start = create(GenerateStartSchema, {
    model,
    input: { case: "chat", value: { messages } },
    params: samplingFromBody(body, maxField, caps),
    requestId,
    tools,
    toolChoice,
    parallelToolCalls: optionalBoolean(body, "parallel_tool_calls"),
    responseFormat,
    n,
    logprobs,
    topLogprobs,
    extraJson: extraFields(body, CHAT_FIELDS, chars),
  });
  parseGenerateStart(start);
  const stream = optionalBoolean(body, "stream") ?? false;
  return { start, stream, includeUsage: stream && includeUsage(body), requestId, choices: Math.max(1, n), logprobs };
}

export function includeUsage(body: Record<string, unknown>): boolean {
  const options = body.stream_options;
  if (options === undefined || options === null) return false;
  if (typeof options !== "object") throw invalidField("stream_options", "'stream_options' must be an object.");
  return optionalBoolean(options as Record<string, unknown>, "include_usage") ?? false;
}

function toolCallsJson(choice: AssembledChoice) {
  return choice.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
}

export function chatFormat(id: string, model: string, created: number, logprobs: boolean): CompletionFormat {
  const chunk = (index: number, delta: object, finishReason: string | null, lp: object | null = null) => ({
    id, object: "chat.completion.chunk", created, model, system_fingerprint: null,
    choices: [{ index, delta, logprobs: lp, finish_reason: finishReason }],
  });
  return {
    opening: (index) => chunk(index, { role: "assistant", content: "" }, null, logprobs ? { content: [], refusal: null } : null),
    content: (index, text, logprob) => chunk(index, { content: text }, null, logprob ? { content: [logprob], refusal: null } : null),
    toolCall: (index, call) =>
      chunk(index, {
        tool_calls: [call.id ? { index: call.index, id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } } : { index: call.index, function: { arguments: call.arguments } }],
      }, null),
    refusal: (index, text) => chunk(index, { refusal: text }, null),
    closing: (index, finishReason) => chunk(index, {}, finishReason),
    usageChunk: (usage) => ({ id, object: "chat.completion.chunk", created, model, system_fingerprint: null, choices: [], usage }),
    whole: (choices, usage) => ({
      id, object: "chat.completion", created, model, system_fingerprint: null,
      choices: choices.map((c, index) => ({
        index,
        message: {
          role: "assistant",
          content: c.toolCalls.length > 0 && c.text === "" ? null : c.refusal !== null && c.text === "" ? null : c.text,
          refusal: c.refusal,
          ...(c.toolCalls.length > 0 ? { tool_calls: toolCallsJson(c) } : {}),
        },
        logprobs: logprobs ? { content: c.logprobs, refusal: null } : null,
        finish_reason: c.finishReason,
      })),
      usage,
    }),
  };
}

export type { LogprobJson };
