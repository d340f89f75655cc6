import type { CountTokensRequest, EmbedRequest, GenerateStart } from "../gen/smmf/v1/inference_pb.js";
import { MAX_STOP_SEQUENCES } from "../worker/parseGenerateStart.js";
import { invalidField } from "./fields.js";
import { MAX_TOOLS } from "./toolFields.js";

/**
 * What one inference request may hold, checked by the gateway before anything reaches a worker (and so
 * before tokenizing): REST (/v1/chat/completions, /v1/completions, /v1/embeddings) and RPC (Generate, Embed,
 * CountTokens) alike. Over a cap: invalid_argument (400 / INVALID_ARGUMENT) naming the field.
 */
export interface RequestCaps {
  /** Most messages in one chat request. */
  maxMessages: number;
  /** Most characters of prompt: all messages, the prompt, or all embedding inputs together. */
  maxPromptChars: number;
  /** Longest stop string, in characters. */
  maxStopChars: number;
}

export const DEFAULT_REQUEST_CAPS: Readonly<RequestCaps> = { maxMessages: 2048, maxPromptChars: 1_048_576, maxStopChars: 512 };

/**
 * Most stop strings in one request: OpenAI's 4, which the worker enforces too (the hard ceiling, 16, is
 * above it).
 */
export const MAX_STOP_STRINGS = Math.min(16, MAX_STOP_SEQUENCES);

/**
 * Most answers one request may ask for (`n`). OpenAI allows 128; on llama.cpp each answer takes a sequence of
 * the instance, so SMMF keeps a request from taking a whole instance many times over.
 */
export const MAX_CHOICES = 16;

/** Most strings in one embeddings request. */
export const MAX_EMBED_INPUTS = 2048;

/** The caps with defaults for what is not set (or not a positive number). */
export function requestCaps(caps: Partial<RequestCaps> = {}): RequestCaps {
  const pick = (value: number | undefined, fallback: number) => (typeof value === "number" && Number.isFinite(value) && value > 0 ? Math.floor(value) : fallback);
  return {
    maxMessages: pick(caps.maxMessages, DEFAULT_REQUEST_CAPS.maxMessages),
    maxPromptChars: pick(caps.maxPromptChars, DEFAULT_REQUEST_CAPS.maxPromptChars),
    maxStopChars: pick(caps.maxStopChars, DEFAULT_REQUEST_CAPS.maxStopChars),
  };
}

export function checkMessageCount(count: number, caps: RequestCaps): void {
  if (count > caps.maxMessages) throw invalidField("messages", `'messages' holds ${count} messages; at most ${caps.maxMessages} are allowed.`);
}

/** Counts prompt characters as they are added; throws once the total passes the cap. */
export class PromptChars {
  private total = 0;
  constructor(
    private readonly caps: RequestCaps,
    private readonly param: string,
  ) {}

  add(text: string): void {
    this.total += text.length;
    if (this.total > this.caps.maxPromptChars) {
      throw invalidField(this.param, `The prompt is longer than ${this.caps.maxPromptChars} characters (all of '${this.param}' together); shorten it.`);
    }
  }
}

/** Half of a UTF-16 surrogate pair without its other half: no UTF-8 text can carry it to a worker. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function checkStop(stop: readonly string[], caps: RequestCaps): void {
  if (stop.length > MAX_STOP_STRINGS) throw invalidField("stop", `'stop' takes at most ${MAX_STOP_STRINGS} sequences.`);
  for (const s of stop) {
    if (s.length > caps.maxStopChars) throw invalidField("stop", `Each 'stop' sequence may be at most ${caps.maxStopChars} characters long.`);
    if (LONE_SURROGATE.test(s)) throw invalidField("stop", "A 'stop' sequence is not valid Unicode text (it has a lone surrogate).");
  }
}

function checkInput(input: GenerateStart["input"] | CountTokensRequest["input"], caps: RequestCaps, extra: readonly string[] = []): void {
  let chars: PromptChars | undefined;
  if (input.case === "chat") {
    const messages = input.value.messages;
    checkMessageCount(messages.length, caps);
    chars = new PromptChars(caps, "messages");
    for (const m of messages) {
      chars.add(m.content);
      for (const call of m.toolCalls) chars.add(call.arguments);
    }
  } else if (input.case === "prompt") {
    chars = new PromptChars(caps, "prompt");
    chars.add(input.value);
  }
  for (const text of extra) chars?.add(text);
}

/** The caps of a Generate call (gRPC, Connect): tool schemas, the response schema and other fields count as prompt. */
export function checkGenerateStart(start: GenerateStart, caps: RequestCaps): void {
  if (start.n > MAX_CHOICES) throw invalidField("n", `'n' must be at most ${MAX_CHOICES}.`);
  if (start.tools.length > MAX_TOOLS) throw invalidField("tools", `'tools' takes at most ${MAX_TOOLS} tools.`);
  const extra = [start.continuation, start.extraJson, start.responseFormat?.schemaJson ?? ""];
  for (const tool of start.tools) extra.push(tool.parametersJson, tool.description);
  checkInput(start.input, caps, extra);
  if (start.params) checkStop(start.params.stop, caps);
}

/** The caps of a CountTokens call: the same prompt caps as a generation. */
export function checkCountTokens(req: CountTokensRequest, caps: RequestCaps): void {
  checkInput(req.input, caps);
}

/** The caps of an embeddings request: how many strings, and their characters together. */
/** The most documents one rerank request scores. */
export const MAX_RERANK_DOCUMENTS = 1_000;

/** A rerank request's query and documents: present, at most MAX_RERANK_DOCUMENTS, within the prompt characters cap. */
export function checkRerankInputs(query: string, documents: readonly string[], caps: RequestCaps): void {
  if (query.length === 0) throw invalidField("query", "'query' must be a non-empty string.");
  if (documents.length === 0) throw invalidField("documents", "'documents' must hold at least one document.");
  if (documents.length > MAX_RERANK_DOCUMENTS) throw invalidField("documents", `'documents' takes at most ${MAX_RERANK_DOCUMENTS} documents.`);
  const chars = new PromptChars(caps, "documents");
  chars.add(query);
  for (const d of documents) chars.add(d);
}

export function checkEmbedInputs(inputs: readonly string[], caps: RequestCaps): void {
  if (inputs.length > MAX_EMBED_INPUTS) throw invalidField("input", `'input' takes at most ${MAX_EMBED_INPUTS} strings.`);
  const chars = new PromptChars(caps, "input");
  for (const s of inputs) chars.add(s);
}
