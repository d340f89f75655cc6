import { randomBytes } from "node:crypto";
import { LlamaText, type ChatWrapper, type LlamaCompletion, type LlamaContextSequence, type LlamaGrammar, type LlamaModel, type Token } from "node-llama-cpp";
import { linkSignals } from "../util/linkSignals.js";
import { tokensWithoutBos } from "./chatPrompt.js";
import type { FinishReason, GenerationEvent, SamplingOptions, TokenLogprob } from "./Engine.js";
import { sampleFromProbabilities, seededRandom } from "./sampleFromProbabilities.js";
import { StopMatcher, type Release } from "./StopMatcher.js";

export interface Slot {
  sequence: LlamaContextSequence;
  completion: LlamaCompletion;
}

/** What a choice needs of its instance. */
export interface ChoiceRuntime {
  model: LlamaModel;
  wrapper: ChatWrapper;
  contextSize: number;
  tokenBytes(token: Token): number[];
}

/** A function the answer may call, with its arguments' grammar. */
export interface CallableTool {
  name: string;
  grammar: LlamaGrammar;
}

/**
 * How one answer is generated. `content`: free text (under `contentGrammar` when set), and with `callStart`
 * the model may begin tool calls by writing it; `calls`: the answer is tool calls (of `fixedName` only, when set).
 */
export interface ChoicePlan {
  mode: "content" | "calls";
  contentGrammar?: LlamaGrammar;
  tools: CallableTool[];
  fixedName?: string;
  parallel: boolean;
  /** Chat prompts: the rendered prompt up to the answer (tool phases re-render from it). */
  contextText?: LlamaText;
  promptTokens: Token[];
  /** Text stop strings of the chat template, and its special-token stop triggers. */
  textStops: string[];
  tokenStops: LlamaText[];
  /** Grammar of a tool name (any of `tools`). */
  nameGrammar?: LlamaGrammar;
  /** Grammar that lets the model choose between another call (its start text) and the end of the answer. */
  moreCallsGrammar?: LlamaGrammar;
}

type Emit = (event: Extract<GenerationEvent, { type: "delta" }>) => void;

export interface ChoiceResult {
  finishReason: FinishReason;
  completionTokens: number;
  /** The caller's stop string that ended the answer. */
  stopSequence?: string;
}

/** OpenAI-style call ids: "call_" and 24 letters and digits. */
export function newCallId(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = randomBytes(24);
  let id = "call_";
  for (const b of bytes) id += alphabet[b % 62];
  return id;
}

/** The most tool calls in one answer. */
export const MAX_CALLS_PER_ANSWER = 8;

interface PhaseResult {
  text: string;
  tokens: number;
  stopReason: "eog" | "length" | "abort" | "stop";
  /** The text stop string that ended the phase. */
  matched?: string;
}

function withName(text: string | LlamaText, name: string): LlamaText {
  return LlamaText(text).mapValues((v) => (typeof v === "string" ? v.replaceAll("{{functionName}}", name) : v));
}

/**
 * Generates one answer on a sequence: content under an optional grammar and stop strings, and tool calls in the
 * chat template's own call syntax (node-llama-cpp's `settings.functions`): the call's start, the function name
 * (under a grammar of the declared names) and the arguments (under the tool's JSON-schema grammar), so that the
 * arguments always parse and match the schema. Tool-call syntax that the template fixes is written into the
 * answer, not generated; every phase re-renders the prompt with the answer so far, so the model sees exactly
 * what it will see in the next turn's history.
 */
export async function generateChoice(rt: ChoiceRuntime, slot: Slot, plan: ChoicePlan, sampling: SamplingOptions, maxTokens: number, index: number, signal: AbortSignal, emit: Emit): Promise<ChoiceResult> {
  const { model } = rt;
  const calls = rt.wrapper.settings.functions;
  const promptLength = plan.promptTokens.length;
  let answer = LlamaText([]);
  let used = 0;
  const tokensNow = () => (plan.contextText ? tokensWithoutBos(model, LlamaText([plan.contextText, answer])) : plan.promptTokens);
  const remaining = () => maxTokens - used;

  if (plan.mode === "content") {
    const callStart = plan.tools.length > 0 ? LlamaText([calls.parallelism?.call.sectionPrefix ?? "", calls.call.prefix]) : undefined;
    const callStarts = callStart ? [callStart.toString(), ...(calls.call.prefixAlternateMatches ?? []).map((p) => LlamaText(p).toString())] : [];
    const stops = [...plan.textStops, ...(sampling.stop ?? []), ...callStarts].filter((s) => s.length > 0);
    const phase = await contentPhase(rt, slot, plan.promptTokens, plan, sampling, stops, maxTokens, index, signal, emit);
    used = phase.tokens;
    if (!(phase.stopReason === "stop" && phase.matched !== undefined && callStarts.includes(phase.matched))) {
      const byStopSequence = phase.stopReason === "stop" && phase.matched !== undefined && sampling.stop?.includes(phase.matched);
      return { finishReason: phase.stopReason === "length" ? "length" : phase.stopReason === "abort" ? "cancelled" : "stop", completionTokens: used, ...(byStopSequence ? { stopSequence: phase.matched } : {}) };
    }
    // The model began a tool call: the calls go on from its start, under grammars.
    answer = LlamaText([phase.text, callStart!]);
    used = tokensNow().length - promptLength;
    return callsPhase(true);
  }
  return callsPhase(false);

  async function callsPhase(started: boolean): Promise<ChoiceResult> {
    const parallelism = calls.parallelism;
    if (!started) answer = LlamaText([answer, parallelism?.call.sectionPrefix ?? "", calls.call.prefix]);
    let longestCall = 0;
    for (let i = 0; ; i++) {
      const callStartedAt = used;
      // The function's name: written when fixed, else generated under the names' grammar.
      let name = plan.fixedName;
      if (name) answer = LlamaText([answer, name]);
      else {
        used = tokensNow().length - promptLength;
        if (remaining() <= 0) return { finishReason: "length", completionTokens: used };
        const phase = await grammarPhase(slot, tokensNow(), plan.nameGrammar!, sampling, Math.min(remaining(), 48), signal);
        if (phase.stopReason === "abort") return { finishReason: "cancelled", completionTokens: used + phase.tokens };
        name = phase.text.trim();
        if (!plan.tools.some((t) => t.name === name)) {
          // Only a cut-off name can fail the grammar's choice.
          return { finishReason: "length", completionTokens: used + phase.tokens };
        }
        answer = LlamaText([answer, phase.text]);
      }
      const tool = plan.tools.find((t) => t.name === name)!;
      answer = LlamaText([answer, withName(calls.call.paramsPrefix, name)]);
      used = tokensNow().length - promptLength;
      emit({ type: "delta", text: "", tokenCount: 0, index, toolCalls: [{ index: i, id: newCallId(), name, arguments: "" }], otherTokens: 0 });
      if (remaining() <= 0) return { finishReason: "length", completionTokens: used };
      // The arguments, streamed as they are generated.
      const args = await grammarPhase(slot, tokensNow(), tool.grammar, sampling, remaining(), signal, (text, tokens) => {
        emit({ type: "delta", text: "", tokenCount: 0, index, toolCalls: [{ index: i, arguments: text }], otherTokens: tokens });
      });
      if (args.stopReason === "abort") return { finishReason: "cancelled", completionTokens: used + args.tokens };
      if (args.stopReason === "length") return { finishReason: "length", completionTokens: used + args.tokens };
      answer = LlamaText([answer, args.text, withName(calls.call.suffix, name)]);
      used = tokensNow().length - promptLength;
      longestCall = Math.max(longestCall, used - callStartedAt);
      // Another call, when allowed, when the tokens left can hold one more like the longest so far (twice over:
      // a call cut off by max_tokens has broken arguments), and when the model wants one.
      if (plan.fixedName || !plan.parallel || !plan.moreCallsGrammar || i + 1 >= MAX_CALLS_PER_ANSWER || remaining() < 2 * longestCall) break;
      const more = await grammarPhase(slot, tokensNow(), plan.moreCallsGrammar, sampling, Math.min(remaining(), 32), signal);
      if (more.stopReason === "abort") return { finishReason: "cancelled", completionTokens: used };
      if (more.text.trim() === "") break;
      answer = LlamaText([answer, parallelism?.call.betweenCalls ?? "", calls.call.prefix]);
    }
    if (parallelism?.call.sectionSuffix) answer = LlamaText([answer, parallelism.call.sectionSuffix]);
    used = Math.min(maxTokens, tokensNow().length - promptLength);
    // OpenAI ends an answer to a named function with "stop", and other tool-call answers with "tool_calls".
    return { finishReason: plan.fixedName ? "stop" : "tool_calls", completionTokens: used };
  }
}

function penaltyOptions(sampling: SamplingOptions) {
  const penalties = sampling.frequencyPenalty || sampling.presencePenalty;
  return penalties ? { penalty: 1, frequencyPenalty: sampling.frequencyPenalty, presencePenalty: sampling.presencePenalty } : (false as const);
}

/**
 * One run of node-llama-cpp's completion (its native sampler, under `grammar` when set): each text chunk goes to
 * `onText` with the number of tokens it stands for. Tokens whose text a grammar's stop trigger or whitespace
 * trimming kept back are counted too (as an empty chunk at the end), so the count is every token generated.
 */
async function complete(slot: Slot, tokens: Token[], sampling: SamplingOptions, options: { grammar?: LlamaGrammar; maxTokens: number; tokenStops?: LlamaText[]; signal: AbortSignal }, onText: (text: string, tokens: number) => void): Promise<{ stopReason: PhaseResult["stopReason"]; tokens: number }> {
  let pending = 0;
  let seen = 0;
  const meter = slot.sequence.tokenMeter.getState();
  const { metadata } = await slot.completion.generateCompletionWithMeta(tokens, {
    signal: options.signal,
    stopOnAbortSignal: true,
    maxTokens: options.maxTokens,
    grammar: options.grammar,
    temperature: sampling.temperature,
    topP: sampling.topP,
    topK: sampling.topK,
    seed: sampling.seed,
    repeatPenalty: penaltyOptions(sampling),
    customStopTriggers: options.tokenStops && options.tokenStops.length > 0 ? options.tokenStops : undefined,
    contextShiftSize: 1,
    disableContextShift: true,
    onToken(generated) {
      pending += generated.length;
      seen += generated.length;
    },
    onTextChunk(chunk) {
      if (pending === 0) return;
      const n = pending;
      pending = 0;
      onText(chunk, n);
    },
  });
  const hidden = Math.max(0, slot.sequence.tokenMeter.diff(meter).usedOutputTokens - seen);
  if (pending + hidden > 0) onText("", pending + hidden);
  const stopReason = metadata.stopReason === "abort" ? "abort" : metadata.stopReason === "maxTokens" ? "length" : "eog";
  return { stopReason, tokens: seen + hidden };
}

/**
 * A stretch of tool-call syntax under a grammar (a name, arguments, the choice of another call): the text as
 * generated, streamed to `onText` with its token count.
 */
async function grammarPhase(slot: Slot, tokens: Token[], grammar: LlamaGrammar, sampling: SamplingOptions, maxTokens: number, signal: AbortSignal, onText?: (text: string, tokens: number) => void): Promise<PhaseResult> {
  let text = "";
  const run = await complete(slot, tokens, sampling, { grammar, maxTokens, signal }, (chunk, n) => {
    text += chunk;
    onText?.(chunk, n);
  });
  return { text, tokens: run.tokens, stopReason: run.stopReason };
}

/**
 * Content: streamed through the stop matcher (text that might begin a stop string is held back), with
 * log-probabilities when asked for. Ends at the end of the answer, a stop string, max tokens, or cancellation.
 */
async function contentPhase(rt: ChoiceRuntime, slot: Slot, tokens: Token[], plan: ChoicePlan, sampling: SamplingOptions, stops: string[], maxTokens: number, index: number, signal: AbortSignal, emit: Emit): Promise<PhaseResult> {
  const abort = linkSignals(signal);
  const matcher = new StopMatcher(stops);
  const logprobs: TokenLogprob[] = [];
  let count = 0;
  let text = "";
  const release = (releases: Release[]) => {
    for (const r of releases) {
      text += r.text;
      const event: Extract<GenerationEvent, { type: "delta" }> = { type: "delta", text: r.text, tokenCount: r.tokenCount, index };
      if (sampling.logprobs) event.logprobs = logprobs.splice(0, r.tokenCount);
      emit(event);
    }
  };
  let stopReason: PhaseResult["stopReason"];
  try {
    const onText = (chunk: string, n: number) => {
      count += n;
      release(matcher.push(chunk, n));
      if (matcher.hasStopped) abort.abort();
    };
    if (sampling.logprobs) stopReason = await sampleWithLogprobs(rt, slot, tokens, sampling, maxTokens, abort.signal, logprobs, onText);
    else stopReason = (await complete(slot, tokens, sampling, { grammar: plan.contentGrammar, maxTokens, tokenStops: plan.tokenStops, signal: abort.signal }, onText)).stopReason;
    release(matcher.flush());
  } finally {
    abort.unlink();
  }
  if (matcher.hasStopped) return { text, tokens: count, stopReason: "stop", matched: matcher.matched };
  return { text, tokens: count, stopReason };
}

/** `tokens` after the model's BOS token, when the model wants one. */
export function withBos(model: LlamaModel, tokens: Token[]): Token[] {
  const bos = model.tokens.bos;
  return bos != null && model.tokens.shouldPrependBosToken ? [bos, ...tokens] : tokens;
}

const decoder = new TextDecoder("utf-8", { fatal: false });
/** Tokens that frequency and presence penalties look back on (node-llama-cpp's default `lastTokens`). */
const PENALTY_WINDOW = 64;

/** Whether bytes end inside a UTF-8 character. */
function endsMidCharacter(bytes: number[]): boolean {
  for (let back = 1; back <= Math.min(4, bytes.length); back++) {
    const b = bytes[bytes.length - back];
    if ((b & 0xc0) === 0x80) continue; // continuation byte: look further back
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back;
  }
  return false;
}

/**
 * Content with log-probabilities: node-llama-cpp reports probabilities only after its sampler chain has changed
 * them (temperature, top-k, top-p), so each step reads the model's full distribution with greedy settings and
 * the next token is drawn here (sampleFromProbabilities) from it, with the same chain. The log-probabilities
 * are the model's own, as OpenAI reports them. Text is decoded from the tokens' bytes, holding a token that
 * ends inside a character until the character is whole.
 */
async function sampleWithLogprobs(rt: ChoiceRuntime, slot: Slot, tokens: Token[], sampling: SamplingOptions, maxTokens: number, signal: AbortSignal, logprobs: TokenLogprob[], onText: (text: string, tokens: number) => void): Promise<PhaseResult["stopReason"]> {
  const { model } = rt;
  const random = seededRandom(sampling.seed);
  const counts = new Map<Token, number>();
  const recent: Token[] = [];
  const newline = model.tokens.nl;
  const top = sampling.topLogprobs ?? 0;
  const input = withBos(model, tokens);
  // The sequence's cache keeps what it shares with the input (prefix reuse); at least the last token is
  // evaluated again, for its probabilities.
  const { firstDifferentIndex } = slot.sequence.compareContextTokens(input);
  const keep = Math.min(firstDifferentIndex, input.length - 1);
  if (keep < slot.sequence.nextTokenIndex) await slot.sequence.eraseContextTokenRanges([{ start: keep, end: slot.sequence.nextTokenIndex }]);
  const iterator = slot.sequence.evaluateWithMetadata(input.slice(keep), { probabilities: true }, { temperature: 0, yieldEogToken: true });
  let generated = 0;
  let heldBytes: number[] = [];
  let next: Token | undefined;
  try {
    for (;;) {
      if (signal.aborted) return "abort";
      const step = next === undefined ? await iterator.next() : await iterator.next(next);
      if (step.done) return "eog";
      const probabilities = step.value.probabilities;
      const token = sampleFromProbabilities(probabilities, sampling, counts, random);
      if (model.tokenizer.isEogToken(token)) return "eog";
      // Penalties count what node-llama-cpp's own sampler counts: the last 64 tokens, newlines left out.
      if (token !== newline) {
        recent.push(token);
        counts.set(token, (counts.get(token) ?? 0) + 1);
        if (recent.length > PENALTY_WINDOW) {
          const old = recent.shift()!;
          const left = counts.get(old)! - 1;
          if (left > 0) counts.set(old, left);
          else counts.delete(old);
        }
      }
      const bytes = rt.tokenBytes(token);
      const entry: TokenLogprob = { token: decoder.decode(Uint8Array.from(bytes)), logprob: Math.log(probabilities.get(token) ?? 0), bytes, top: [] };
      if (top > 0) {
        for (const [t, p] of probabilities) {
          if (entry.top.length >= top) break;
          const b = rt.tokenBytes(t);
          entry.top.push({ token: decoder.decode(Uint8Array.from(b)), logprob: Math.log(p), bytes: b });
        }
      }
      logprobs.push(entry);
      generated++;
      // A token inside a character counts now with empty text; the character comes with its last token.
      heldBytes = heldBytes.length > 0 ? heldBytes.concat(bytes) : bytes;
      if (endsMidCharacter(heldBytes) && heldBytes.length < 4) onText("", 1);
      else {
        onText(decoder.decode(Uint8Array.from(heldBytes)), 1);
        heldBytes = [];
      }
      if (signal.aborted) return "abort";
      if (generated >= maxTokens) return "length";
      next = token;
    }
  } finally {
    // A character cut off by the end stays out of the text (its bytes are in the log-probabilities).
    await iterator.return();
  }
}
