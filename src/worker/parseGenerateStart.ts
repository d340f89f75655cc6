import type { ChatInput, GenerateStart, SamplingParams } from "../gen/smmf/v1/inference_pb.js";
import type { ChatTurn, GenerationInput, SamplingOptions } from "../engines/Engine.js";
import { SmmfError } from "../errors/SmmfError.js";

const ROLES: Record<string, ChatTurn["role"]> = { system: "system", developer: "system", user: "user", assistant: "assistant" };
export const MAX_STOP_SEQUENCES = 4;

function invalid(param: string, message: string): SmmfError {
  return new SmmfError("invalid_argument", message, { param });
}

function inRange(value: number | undefined, param: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < min || value > max) throw invalid(param, `'${param}' must be between ${min} and ${max}; got ${value}`);
  return value;
}

export function parseChat(chat: ChatInput | undefined): ChatTurn[] {
  const messages = chat?.messages ?? [];
  if (messages.length === 0) throw invalid("messages", "'messages' must contain at least one message");
  return messages.map((m, i) => {
    const role = Object.hasOwn(ROLES, m.role) ? ROLES[m.role] : undefined;
    if (!role) throw invalid(`messages[${i}].role`, `messages[${i}].role must be one of system, developer, user, assistant; got '${m.role}'`);
    return { role, content: m.content };
  });
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
  return { input: parseInput(start.input, start.continuation), sampling: parseSampling(start.params) };
}
