import { FinishReason } from "../gen/smmf/v1/inference_pb.js";
import { invalidField, optionalBoolean, optionalNumber } from "./fields.js";
import { parseChatRequest } from "./chatCompletions.js";
import { DEFAULT_REQUEST_CAPS, type RequestCaps } from "./requestCaps.js";
import type { GenerationRequest } from "./streamGeneration.js";

// Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens) on SMMF's chat path: a request is
// read into the chat request it means (system prompt, text, tool_use and tool_result blocks, tools, sampling),
// which then goes through the same checks, caps, routing, retries and failover as /v1/chat/completions.

type Json = Record<string, unknown>;

/** The fields of a Messages request SMMF reads; any other is refused, as Anthropic refuses it. */
const MESSAGES_FIELDS = new Set(["model", "messages", "max_tokens", "system", "stop_sequences", "temperature", "top_p", "top_k", "stream", "metadata", "tools", "tool_choice"]);
const COUNT_FIELDS = new Set(["model", "messages", "system", "tools", "tool_choice"]);

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

function refuseUnknown(body: Json, known: ReadonlySet<string>): void {
  for (const name of Object.keys(body)) {
    if (!known.has(name) && body[name] !== undefined) throw invalidField(name, `${name}: Extra inputs are not permitted`);
  }
}

/** The text of a content that must be text: a string, or text blocks. */
function textOf(content: unknown, at: string): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw invalidField(at, `${at}: Input should be a valid string or a list of content blocks`);
  return content
    .map((block, j) => {
      if (isObject(block) && block.type === "text" && typeof block.text === "string") return block.text;
      throw invalidField(`${at}.${j}`, `${at}.${j}: only text blocks are accepted here`);
    })
    .join("");
}

/** One Messages API message as the chat messages it means (a user turn's tool_result blocks are tool messages). */
function chatMessages(message: unknown, i: number): Json[] {
  const at = `messages.${i}`;
  if (!isObject(message)) throw invalidField(at, `${at}: Input should be an object`);
  const { role, content } = message;
  if (role !== "user" && role !== "assistant") throw invalidField(`${at}.role`, `${at}.role: Input should be 'user' or 'assistant'`);
  if (typeof content === "string") return [{ role, content }];
  if (!Array.isArray(content)) throw invalidField(`${at}.content`, `${at}.content: Input should be a valid string or a list of content blocks`);
  const out: Json[] = [];
  let text = "";
  const calls: Json[] = [];
  for (const [j, block] of content.entries()) {
    const where = `${at}.content.${j}`;
    if (!isObject(block) || typeof block.type !== "string") throw invalidField(where, `${where}: a content block must be an object with a 'type'`);
    switch (block.type) {
      case "text":
        if (typeof block.text !== "string") throw invalidField(`${where}.text`, `${where}.text: Field required`);
        text += block.text;
        break;
      case "tool_use": {
        if (role !== "assistant") throw invalidField(where, `${where}: tool_use blocks belong in assistant messages`);
        if (typeof block.id !== "string" || block.id === "" || typeof block.name !== "string" || block.name === "") throw invalidField(where, `${where}: a tool_use block needs a string 'id' and 'name'`);
        if (!isObject(block.input)) throw invalidField(`${where}.input`, `${where}.input: Input should be an object`);
        calls.push({ id: block.id, type: "function", function: { name: block.name, arguments: JSON.stringify(block.input) } });
        break;
      }
      case "tool_result": {
        if (role !== "user") throw invalidField(where, `${where}: tool_result blocks belong in user messages`);
        if (typeof block.tool_use_id !== "string" || block.tool_use_id === "") throw invalidField(`${where}.tool_use_id`, `${where}.tool_use_id: Field required`);
        const result = block.content === undefined ? "" : textOf(block.content, `${where}.content`);
        out.push({ role: "tool", tool_call_id: block.tool_use_id, content: block.is_error === true ? `Error: ${result}` : result });
        break;
      }
      default:
        throw invalidField(where, `${where}: content blocks of type '${block.type}' are not supported (text, tool_use and tool_result are)`);
    }
  }
  if (text !== "" || calls.length > 0 || out.length === 0) out.push({ role, content: text, ...(calls.length > 0 ? { tool_calls: calls } : {}) });
  return out;
}

function toolsOf(tools: unknown): Json[] | undefined {
  if (tools === undefined || tools === null) return undefined;
  if (!Array.isArray(tools)) throw invalidField("tools", "tools: Input should be a valid list");
  return tools.map((tool, i) => {
    if (!isObject(tool) || typeof tool.name !== "string") throw invalidField(`tools.${i}`, `tools.${i}: a tool needs a string 'name' and an 'input_schema'`);
    if (tool.type !== undefined && tool.type !== "custom") throw invalidField(`tools.${i}.type`, `tools.${i}: server tools ('${String(tool.type)}') are not supported; define the tool with an input_schema`);
    if (!isObject(tool.input_schema)) throw invalidField(`tools.${i}.input_schema`, `tools.${i}.input_schema: Field required`);
    return { type: "function", function: { name: tool.name, ...(typeof tool.description === "string" ? { description: tool.description } : {}), parameters: tool.input_schema } };
  });
}

function toolChoiceOf(choice: unknown): { tool_choice?: unknown; parallel_tool_calls?: boolean } {
  if (choice === undefined || choice === null) return {};
  if (!isObject(choice) || typeof choice.type !== "string") throw invalidField("tool_choice", "tool_choice: Input should be an object with a 'type'");
  const parallel = choice.disable_parallel_tool_use === true ? { parallel_tool_calls: false } : {};
  switch (choice.type) {
    case "auto": return { tool_choice: "auto", ...parallel };
    case "any": return { tool_choice: "required", ...parallel };
    case "none": return { tool_choice: "none" };
    case "tool":
      if (typeof choice.name !== "string") throw invalidField("tool_choice.name", "tool_choice.name: Field required");
      return { tool_choice: { type: "function", function: { name: choice.name } }, ...parallel };
    default:
      throw invalidField("tool_choice.type", "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'");
  }
}

/** The chat body a Messages body means (fields checked as Anthropic checks them, before the chat checks). */
function chatBody(body: Json, counting: boolean): Json {
  refuseUnknown(body, counting ? COUNT_FIELDS : MESSAGES_FIELDS);
  if (!Array.isArray(body.messages)) throw invalidField("messages", body.messages === undefined ? "messages: Field required" : "messages: Input should be a valid list");
  if (body.messages.length === 0) throw invalidField("messages", "messages: at least one message is required");
  const messages: Json[] = [];
  if (body.system !== undefined && body.system !== null) messages.push({ role: "system", content: textOf(body.system, "system") });
  body.messages.forEach((m, i) => messages.push(...chatMessages(m, i)));
  const chat: Json = { model: body.model, messages, tools: toolsOf(body.tools), ...toolChoiceOf(body.tool_choice) };
  if (counting) return chat;
  if (body.max_tokens === undefined || body.max_tokens === null) throw invalidField("max_tokens", "max_tokens: Field required");
  optionalNumber(body, "max_tokens", { integer: true, min: 1 });
  optionalNumber(body, "temperature", { min: 0, max: 1 });
  if (body.stop_sequences !== undefined && !(Array.isArray(body.stop_sequences) && body.stop_sequences.every((s) => typeof s === "string"))) {
    throw invalidField("stop_sequences", "stop_sequences: Input should be a valid list of strings");
  }
  if (body.metadata !== undefined && !isObject(body.metadata)) throw invalidField("metadata", "metadata: Input should be an object");
  optionalBoolean(body, "stream");
  return {
    ...chat,
    max_tokens: body.max_tokens,
    ...(Array.isArray(body.stop_sequences) && body.stop_sequences.length > 0 ? { stop: body.stop_sequences } : {}),
    temperature: body.temperature,
    top_p: body.top_p,
    top_k: body.top_k,
    stream: body.stream,
  };
}

/** Reads a POST /v1/messages body into the generation it asks for. */
export function parseMessagesRequest(body: Json, requestId: string, caps: RequestCaps = DEFAULT_REQUEST_CAPS): GenerationRequest {
  return parseChatRequest(chatBody(body, false), requestId, caps);
}

/** Reads a POST /v1/messages/count_tokens body into the chat input to count (with the model's name). */
export function parseCountTokensRequest(body: Json, caps: RequestCaps = DEFAULT_REQUEST_CAPS): GenerationRequest {
  return parseChatRequest(chatBody(body, true), "count", caps);
}

/** Anthropic's stop_reason for a finished answer (one that ends with tool calls stopped for them: a call forced by name finishes as "stop" in the chat dialect). */
export function stopReasonOf(finish: FinishReason, stopSequence: string, toolUse: boolean): string {
  if (toolUse && (finish === FinishReason.STOP || finish === FinishReason.TOOL_CALLS)) return "tool_use";
  switch (finish) {
    case FinishReason.LENGTH: return "max_tokens";
    case FinishReason.TOOL_CALLS: return "tool_use";
    case FinishReason.CONTENT_FILTER: return "refusal";
    default: return stopSequence ? "stop_sequence" : "end_turn";
  }
}

/** A tool call's arguments as the tool_use block's input (an object; arguments that are not one are kept as `_raw`). */
export function toolInput(args: string): Json {
  try {
    const parsed: unknown = JSON.parse(args === "" ? "{}" : args);
    if (isObject(parsed)) return parsed;
  } catch {
    // Kept as sent, below.
  }
  return { _raw: args };
}
