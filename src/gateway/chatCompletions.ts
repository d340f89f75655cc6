import { create } from "@bufbuild/protobuf";
import { GenerateStartSchema, type ChatMessage } from "../gen/smmf/v1/inference_pb.js";
import { parseGenerateStart } from "../worker/parseGenerateStart.js";
import { invalidField, optionalBoolean, requiredString } from "./fields.js";
import { checkMessageCount, DEFAULT_REQUEST_CAPS, PromptChars, type RequestCaps } from "./requestCaps.js";
import { samplingFromBody } from "./samplingFromBody.js";
import type { CompletionFormat, GenerationRequest } from "./streamGeneration.js";

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

/** The messages of a chat body; their count and characters are capped before anything else is done with them. */
function parseMessages(value: unknown, caps: RequestCaps): { role: string; content: string }[] {
  if (value === undefined || value === null) throw invalidField("messages", "Missing required parameter: 'messages'.");
  if (!Array.isArray(value)) throw invalidField("messages", "'messages' must be an array.");
  if (value.length === 0) throw invalidField("messages", "'messages' must contain at least one message.");
  checkMessageCount(value.length, caps);
  const chars = new PromptChars(caps, "messages");
  return value.map((m, i) => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw invalidField(`messages[${i}]`, `messages[${i}] must be an object.`);
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (typeof role !== "string") throw invalidField(`messages[${i}].role`, `messages[${i}].role must be a string.`);
    const text = contentText(content, i);
    chars.add(text);
    return { role, content: text };
  });
}

/** Reads a /v1/chat/completions body into a GenerationRequest. */
export function parseChatRequest(body: Record<string, unknown>, requestId: string, caps: RequestCaps = DEFAULT_REQUEST_CAPS): GenerationRequest {
  const model = requiredString(body, "model");
  const messages = parseMessages(body.messages, caps) as ChatMessage[];
  const maxField = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? "max_completion_tokens" : "max_tokens";
  const start = create(GenerateStartSchema, {
    model,
    input: { case: "chat", value: { messages } },
    params: samplingFromBody(body, maxField, caps),
    requestId,
  });
  parseGenerateStart(start);
  const stream = optionalBoolean(body, "stream") ?? false;
  return { start, stream, includeUsage: stream && includeUsage(body), requestId };
}

export function includeUsage(body: Record<string, unknown>): boolean {
  const options = body.stream_options;
  if (options === undefined || options === null) return false;
  if (typeof options !== "object") throw invalidField("stream_options", "'stream_options' must be an object.");
  return optionalBoolean(options as Record<string, unknown>, "include_usage") ?? false;
}

export function chatFormat(id: string, model: string, created: number): CompletionFormat {
  const chunk = (delta: object, finishReason: string | null) => ({
    id, object: "chat.completion.chunk", created, model, system_fingerprint: null,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  });
  return {
    opening: () => chunk({ role: "assistant", content: "" }, null),
    chunk: (text) => chunk({ content: text }, null),
    closing: (finishReason) => chunk({}, finishReason),
    usageChunk: (usage) => ({ id, object: "chat.completion.chunk", created, model, system_fingerprint: null, choices: [], usage }),
    whole: (text, finishReason, usage) => ({
      id, object: "chat.completion", created, model, system_fingerprint: null,
      choices: [{ index: 0, message: { role: "assistant", content: text, refusal: null }, logprobs: null, finish_reason: finishReason }],
      usage,
    }),
  };
}
