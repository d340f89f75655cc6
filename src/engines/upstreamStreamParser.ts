import type { FinishReason, GenerationEvent, TokenLogprob, ToolCallDelta } from "./Engine.js";

/** A stream chunk the parser cannot read (`malformed`), or one in which the upstream reports a failure (`failed`). */
export class UpstreamStreamError extends Error {
  constructor(readonly kind: "malformed" | "failed") {
    super(kind === "malformed" ? "malformed stream data" : "the upstream failed during the stream");
    this.name = "UpstreamStreamError";
  }
}

export type DeltaEvent = Extract<GenerationEvent, { type: "delta" }>;
export type DoneEvent = Extract<GenerationEvent, { type: "done" }>;

/** The most answers a stream may carry (OpenAI allows n up to 128). */
const MAX_ANSWERS = 128;

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

function malformed(): never {
  throw new UpstreamStreamError("malformed");
}

/** A string field: undefined when absent or null; anything but a string is malformed. */
function optionalString(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") malformed();
  return v;
}

function utf8(token: string): number[] {
  return [...Buffer.from(token, "utf8")];
}

/** A log-probability; null (which some upstreams send for a token they have no probability for) reads as 0. */
function logprobOf(v: unknown): number {
  if (v === null || v === undefined) return 0;
  if (typeof v !== "number") malformed();
  return v;
}

function bytesOf(v: unknown, token: string): number[] {
  if (Array.isArray(v) && v.every((b) => Number.isInteger(b) && (b as number) >= 0 && (b as number) <= 255)) return v as number[];
  return utf8(token);
}

/** One entry of a chat `logprobs.content` (or of its `top_logprobs`). */
function chatTokenLogprob(e: unknown, withTop: boolean): TokenLogprob {
  if (!isObject(e) || typeof e.token !== "string") malformed();
  const token = e.token;
  const top = withTop && Array.isArray(e.top_logprobs) ? e.top_logprobs.map((t) => chatTokenLogprob(t, false)) : [];
  return { token, logprob: logprobOf(e.logprob), bytes: bytesOf(e.bytes, token), top };
}

/**
 * A choice's `logprobs`, as TokenLogprobs: the chat shape (`{content: [{token, logprob, bytes, top_logprobs}]}`)
 * or the legacy completions one (`{tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}`),
 * whose bytes are the tokens' UTF-8.
 */
export function parseLogprobs(raw: unknown): TokenLogprob[] {
  if (raw === undefined || raw === null) return [];
  if (!isObject(raw)) malformed();
  if (Array.isArray(raw.content)) return raw.content.map((e) => chatTokenLogprob(e, true));
  if (Array.isArray(raw.tokens)) {
    const logprobs = Array.isArray(raw.token_logprobs) ? raw.token_logprobs : [];
    const tops = Array.isArray(raw.top_logprobs) ? raw.top_logprobs : [];
    return raw.tokens.map((token, i) => {
      if (typeof token !== "string") malformed();
      const alternatives = tops[i];
      if (alternatives !== undefined && alternatives !== null && !isObject(alternatives)) malformed();
      const top = Object.entries(alternatives ?? {}).map(([t, lp]) => ({ token: t, logprob: logprobOf(lp), bytes: utf8(t) }));
      return { token, logprob: logprobOf(logprobs[i]), bytes: utf8(token), top };
    });
  }
  // `{content: null}` (no content tokens in this chunk, e.g. a refusal's) or a shape with nothing we know.
  return [];
}

/** An upstream's finish_reason as SMMF's; unknown ones (and none) read as "stop". */
export function finishReasonOf(upstream: unknown): FinishReason {
  switch (upstream) {
    case "length":
      return "length";
    case "tool_calls":
    case "function_call":
      return "tool_calls";
    case "content_filter":
      return "content_filter";
    default:
      return "stop";
  }
}

interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  /** OpenAI, vLLM and llama-server report prompt tokens served from their prefix cache here. */
  prompt_tokens_details?: { cached_tokens?: unknown } | null;
}

/**
 * Reads an OpenAI-format completion stream, one `data:` payload at a time (pure: JSON in, events out):
 * each choice of a chunk that carries something becomes one delta event (its `index` the choice's), with its
 * content text (one token per chunk, or one per log-probability entry where it has several), tool call
 * pieces, log-probabilities and refusal (a chunk with only tool call or refusal pieces counts one other
 * token). Finish reasons are kept per choice, and the upstream's usage; `done` builds the final event.
 *
 * A tool call's id and name go out once: an upstream that repeats them in every piece of the call would
 * otherwise have clients that concatenate string fields (as some SDK stream helpers do) build a wrong id.
 */
export class UpstreamStreamParser {
  private readonly finishes: (FinishReason | undefined)[] = [];
  private readonly tokens: number[] = [];
  private readonly calls = new Map<string, { id?: string; name?: string }>();
  private usage: Usage | undefined;
  private stopSequence: string | undefined;
  private answers: number;

  /** `answers`: how many choices the request asked for (n). */
  constructor(
    private readonly kind: "chat" | "prompt",
    answers = 1,
  ) {
    this.answers = Math.max(1, answers);
  }

  /** The events of one `data:` payload (other than `[DONE]`); throws UpstreamStreamError. */
  accept(data: string): DeltaEvent[] {
    let chunk: unknown;
    try {
      chunk = JSON.parse(data);
    } catch {
      malformed();
    }
    if (!isObject(chunk)) malformed();
    if (chunk.error !== undefined && chunk.error !== null) throw new UpstreamStreamError("failed");
    if (isObject(chunk.usage)) this.usage = chunk.usage as Usage;
    const choices = chunk.choices;
    if (choices === undefined || choices === null) return [];
    if (!Array.isArray(choices)) malformed();
    const events: DeltaEvent[] = [];
    for (const [position, choice] of choices.entries()) {
      const event = this.choice(choice, position);
      if (event) events.push(event);
    }
    return events;
  }

  private choice(choice: unknown, position: number): DeltaEvent | undefined {
    if (!isObject(choice)) malformed();
    const index = choice.index === undefined || choice.index === null ? position : choice.index;
    if (!Number.isInteger(index) || (index as number) < 0 || (index as number) >= MAX_ANSWERS) malformed();
    const i = index as number;
    if (i >= this.answers) this.answers = i + 1;
    const chat = this.kind === "chat";
    const delta = chat ? choice.delta : undefined;
    if (delta !== undefined && delta !== null && !isObject(delta)) malformed();
    const text = optionalString(chat ? delta?.content : choice.text);
    const toolCalls = chat ? this.toolCalls(delta?.tool_calls, i) : undefined;
    const refusal = chat ? optionalString(delta?.refusal) || undefined : undefined;
    const logprobs = parseLogprobs(choice.logprobs);
    const finishing = choice.finish_reason !== undefined && choice.finish_reason !== null && choice.finish_reason !== "";
    // One chunk is one content token. An empty chunk is a token too (a character spread over several tokens),
    // unless it only opens the message (a role), only closes it (a finish reason), or carries other pieces.
    const opening = chat && delta?.role !== undefined;
    const contentToken = !!text || logprobs.length > 0 || (text === "" && !opening && !finishing && !toolCalls && !refusal);
    if (finishing) this.finishes[i] = finishReasonOf(choice.finish_reason);
    // vLLM names the stop string that ended an answer (its `stop_reason`; a token id when a stop token did).
    if (finishing && i === 0 && choice.finish_reason === "stop" && typeof choice.stop_reason === "string" && choice.stop_reason !== "") this.stopSequence = choice.stop_reason;
    if (!contentToken && !toolCalls && !refusal) return undefined;
    const tokenCount = contentToken ? Math.max(1, logprobs.length) : 0;
    const otherTokens = contentToken ? 0 : 1;
    this.tokens[i] = (this.tokens[i] ?? 0) + tokenCount + otherTokens;
    const event: DeltaEvent = { type: "delta", text: text ?? "", tokenCount, index: i };
    if (toolCalls) event.toolCalls = toolCalls;
    if (logprobs.length > 0) event.logprobs = logprobs;
    if (refusal) event.refusal = refusal;
    if (otherTokens) event.otherTokens = otherTokens;
    return event;
  }

  private toolCalls(raw: unknown, choice: number): ToolCallDelta[] | undefined {
    if (raw === undefined || raw === null) return undefined;
    if (!Array.isArray(raw)) malformed();
    const out: ToolCallDelta[] = [];
    for (const [position, call] of raw.entries()) {
      if (!isObject(call)) malformed();
      const index = call.index === undefined || call.index === null ? position : call.index;
      if (!Number.isInteger(index) || (index as number) < 0) malformed();
      const fn = call.function ?? {};
      if (!isObject(fn)) malformed();
      let id = optionalString(call.id) || undefined;
      let name = optionalString(fn.name) || undefined;
      // Arguments are JSON text; an upstream that sends them as a JSON value gets them written out.
      const args = fn.arguments === undefined || fn.arguments === null ? "" : typeof fn.arguments === "string" ? fn.arguments : JSON.stringify(fn.arguments);
      const key = `${choice}:${index as number}`;
      const known = this.calls.get(key) ?? {};
      if (id !== undefined && id === known.id) id = undefined;
      if (name !== undefined && name === known.name) name = undefined;
      if (id !== undefined) known.id = id;
      if (name !== undefined) known.name = name;
      this.calls.set(key, known);
      if (id === undefined && name === undefined && args === "") continue;
      const piece: ToolCallDelta = { index: index as number, arguments: args };
      if (id !== undefined) piece.id = id;
      if (name !== undefined) piece.name = name;
      out.push(piece);
    }
    return out.length > 0 ? out : undefined;
  }

  /** Whether every answer has its finish reason. */
  get finished(): boolean {
    for (let i = 0; i < this.answers; i++) if (this.finishes[i] === undefined) return false;
    return true;
  }

  /**
   * The final event: answer 0's finish reason (and each answer's, with n > 1), the usage the upstream gave,
   * else `estimatedPrompt` and the tokens counted over all answers.
   */
  done(estimatedPrompt: number, engineTimeMs: number): DoneEvent {
    const reasons = Array.from({ length: this.answers }, (_, i) => this.finishes[i] ?? "stop");
    const counted = this.tokens.reduce((sum, n) => sum + (n ?? 0), 0);
    const promptTokens = typeof this.usage?.prompt_tokens === "number" ? this.usage.prompt_tokens : estimatedPrompt;
    const completionTokens = typeof this.usage?.completion_tokens === "number" ? this.usage.completion_tokens : counted;
    const event: DoneEvent = { type: "done", finishReason: reasons[0], promptTokens, completionTokens, engineTimeMs };
    const cached = this.usage?.prompt_tokens_details?.cached_tokens;
    if (typeof cached === "number" && cached > 0) event.cachedPromptTokens = Math.min(cached, promptTokens);
    if (this.answers > 1) event.choiceFinishReasons = reasons;
    if (this.stopSequence !== undefined && reasons[0] === "stop") event.stopSequence = this.stopSequence;
    return event;
  }
}
