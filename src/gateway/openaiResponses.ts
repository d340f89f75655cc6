import { SmmfError } from "../errors/SmmfError.js";
import { invalidField, optionalBoolean } from "./fields.js";
import { parseChatRequest } from "./chatCompletions.js";
import { DEFAULT_REQUEST_CAPS, type RequestCaps } from "./requestCaps.js";
import type { GenerationRequest } from "./streamGeneration.js";

// OpenAI's Responses API (POST /v1/responses) on SMMF's chat path: `instructions` and the `input` items (messages,
// function calls and their outputs), after those of the stored response it continues (`previous_response_id`),
// are read into the chat request they mean, which then goes through the same checks, caps, routing, retries and
// failover as /v1/chat/completions.

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** The fields of a Responses request SMMF reads; any other is refused, as OpenAI refuses an unknown parameter. */
const RESPONSES_FIELDS = new Set([
  "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream", "store", "previous_response_id",
  "tools", "tool_choice", "parallel_tool_calls", "text", "metadata", "user", "truncation", "include",
]);

/** A conversation item as the chat path takes it (a chat message). */
export type ChatItem = Json;

/** Text of a message item's content: a string, or input_text / output_text parts. */
function contentText(content: unknown, at: string): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw invalidField(at, `Invalid type for '${at}': expected a string or an array of content parts.`);
  return content
    .map((part, j) => {
      if (isObject(part) && (part.type === "input_text" || part.type === "output_text") && typeof part.text === "string") return part.text;
      const type = isObject(part) ? String(part.type) : typeof part;
      throw invalidField(`${at}[${j}]`, `'${at}[${j}]' of type '${type}' is not supported: only input_text and output_text parts are.`);
    })
    .join("");
}

/** The input items as chat messages: consecutive function calls become one assistant message with its tool calls. */
export function chatItemsOf(input: unknown): ChatItem[] {
  if (typeof input === "string") return [{ role: "user", content: input }];
  if (!Array.isArray(input)) throw invalidField("input", input === undefined ? "Missing required parameter: 'input'." : "Invalid type for 'input': expected a string or an array of input items.");
  const out: ChatItem[] = [];
  input.forEach((item, i) => {
    const at = `input[${i}]`;
    if (!isObject(item)) throw invalidField(at, `Invalid type for '${at}': expected an object.`);
    const type = item.type ?? "message";
    switch (type) {
      case "message": {
        const role = item.role === "developer" ? "system" : item.role;
        if (role !== "user" && role !== "assistant" && role !== "system") throw invalidField(`${at}.role`, `Invalid value for '${at}.role': expected one of 'user', 'assistant', 'system' or 'developer'.`);
        out.push({ role, content: contentText(item.content, `${at}.content`) });
        break;
      }
      case "function_call": {
        if (typeof item.call_id !== "string" || typeof item.name !== "string" || typeof item.arguments !== "string") throw invalidField(at, `'${at}' (function_call) needs string 'call_id', 'name' and 'arguments'.`);
        const call = { id: item.call_id, type: "function", function: { name: item.name, arguments: item.arguments } };
        const last = out.at(-1);
        if (last?.role === "assistant" && Array.isArray(last.tool_calls)) (last.tool_calls as unknown[]).push(call);
        else out.push({ role: "assistant", content: "", tool_calls: [call] });
        break;
      }
      case "function_call_output": {
        if (typeof item.call_id !== "string") throw invalidField(`${at}.call_id`, `Missing required parameter: '${at}.call_id'.`);
        out.push({ role: "tool", tool_call_id: item.call_id, content: typeof item.output === "string" ? item.output : contentText(item.output, `${at}.output`) });
        break;
      }
      default:
        throw invalidField(`${at}.type`, `Input items of type '${String(type)}' are not supported (message, function_call and function_call_output are).`);
    }
  });
  return out;
}

function toolsOf(tools: unknown): Json[] | undefined {
  if (tools === undefined || tools === null) return undefined;
  if (!Array.isArray(tools)) throw invalidField("tools", "Invalid type for 'tools': expected an array.");
  return tools.map((tool, i) => {
    if (!isObject(tool) || tool.type !== "function") throw invalidField(`tools[${i}].type`, `'tools[${i}]': only function tools are supported.`);
    if (typeof tool.name !== "string") throw invalidField(`tools[${i}].name`, `Missing required parameter: 'tools[${i}].name'.`);
    return { type: "function", function: { name: tool.name, ...(tool.description !== undefined ? { description: tool.description } : {}), parameters: tool.parameters ?? { type: "object", properties: {} }, ...(tool.strict !== undefined && tool.strict !== null ? { strict: tool.strict } : {}) } };
  });
}

function toolChoiceOf(choice: unknown): unknown {
  if (choice === undefined || choice === null || typeof choice === "string") return choice;
  if (isObject(choice) && choice.type === "function" && typeof choice.name === "string") return { type: "function", function: { name: choice.name } };
  throw invalidField("tool_choice", "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or {type: 'function', name}.");
}

function responseFormatOf(text: unknown): unknown {
  if (text === undefined || text === null) return undefined;
  if (!isObject(text)) throw invalidField("text", "Invalid type for 'text': expected an object.");
  const format = text.format;
  if (format === undefined || format === null) return undefined;
  if (!isObject(format)) throw invalidField("text.format", "Invalid type for 'text.format': expected an object.");
  switch (format.type) {
    case "text": return { type: "text" };
    case "json_object": return { type: "json_object" };
    case "json_schema": return { type: "json_schema", json_schema: { name: format.name, schema: format.schema, ...(format.strict !== undefined && format.strict !== null ? { strict: format.strict } : {}), ...(format.description !== undefined ? { description: format.description } : {}) } };
    default: throw invalidField("text.format.type", "Invalid value for 'text.format.type': expected 'text', 'json_object' or 'json_schema'.");
  }
}

export interface ResponsesRequest {
  generation: GenerationRequest;
  /** The conversation this response continues from: the earlier items, then this request's input (no instructions). */
  conversation: ChatItem[];
  store: boolean;
  /** The request's fields echoed in the response object. */
  echo: Json;
}

/**
 * Reads a POST /v1/responses body; `previous` is the conversation of the response it continues (found by the
 * caller from previous_response_id). Instructions are not carried from one response to the next.
 */
export function parseResponsesRequest(body: Json, requestId: string, previous: ChatItem[], caps: RequestCaps = DEFAULT_REQUEST_CAPS): ResponsesRequest {
  for (const name of Object.keys(body)) if (!RESPONSES_FIELDS.has(name) && body[name] !== undefined) throw invalidField(name, `Unknown parameter: '${name}'.`);
  if (body.instructions !== undefined && body.instructions !== null && typeof body.instructions !== "string") throw invalidField("instructions", "Invalid type for 'instructions': expected a string.");
  if (body.include !== undefined && body.include !== null && !(Array.isArray(body.include) && body.include.length === 0)) throw invalidField("include", "'include' is not supported: no extra output data is produced.");
  if (body.truncation !== undefined && body.truncation !== null && body.truncation !== "disabled") throw invalidField("truncation", "Only 'truncation: disabled' is supported: a conversation over the context is refused, not cut.");
  const store = optionalBoolean(body, "store") ?? true;
  const conversation = [...previous, ...chatItemsOf(body.input)];
  const messages = typeof body.instructions === "string" ? [{ role: "system", content: body.instructions }, ...conversation] : conversation;
  if (messages.length === 0) throw invalidField("input", "'input' must contain at least one item.");
  const chat: Json = {
    model: body.model,
    messages,
    max_tokens: body.max_output_tokens,
    temperature: body.temperature,
    top_p: body.top_p,
    stream: body.stream,
    tools: toolsOf(body.tools),
    tool_choice: toolChoiceOf(body.tool_choice),
    parallel_tool_calls: body.parallel_tool_calls,
    response_format: responseFormatOf(body.text),
  };
  let generation: GenerationRequest;
  try {
    generation = parseChatRequest(chat, requestId, caps);
  } catch (err) {
    // The chat path names its own fields: name the Responses API's.
    if (err instanceof SmmfError && err.param === "max_tokens") throw new SmmfError(err.code, err.message.replaceAll("max_tokens", "max_output_tokens"), { param: "max_output_tokens" });
    throw err;
  }
  const echo: Json = {
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    metadata: isObject(body.metadata) ? body.metadata : {},
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    store,
    temperature: body.temperature ?? 1,
    text: isObject(body.text) && isObject(body.text.format) ? { format: body.text.format } : { format: { type: "text" } },
    tool_choice: body.tool_choice ?? "auto",
    tools: Array.isArray(body.tools) ? body.tools : [],
    top_p: body.top_p ?? 1,
    truncation: "disabled",
    user: body.user ?? null,
  };
  return { generation, conversation, store, echo };
}
