import { create } from "@bufbuild/protobuf";
import { SamplingParamsSchema, type SamplingParams } from "../gen/smmf/v1/inference_pb.js";
import { optionalNumber, optionalStop } from "./fields.js";
import { checkStop, DEFAULT_REQUEST_CAPS, MAX_CHOICES, type RequestCaps } from "./requestCaps.js";

const UINT32 = 2 ** 32;

/** Fields read by samplingFromBody and choicesFromBody. */
export const SAMPLING_FIELDS = ["temperature", "top_p", "top_k", "seed", "stop", "frequency_penalty", "presence_penalty", "n"] as const;

export { MAX_CHOICES };

/** `n`: how many answers (1 when unset). */
export function choicesFromBody(body: Record<string, unknown>): number {
  return optionalNumber(body, "n", { integer: true, min: 1, max: MAX_CHOICES }) ?? 1;
}

/** Sampling fields shared by /v1/chat/completions and /v1/completions. */
export function samplingFromBody(body: Record<string, unknown>, maxTokensField: "max_tokens" | "max_completion_tokens" = "max_tokens", caps: RequestCaps = DEFAULT_REQUEST_CAPS): SamplingParams {
  const seed = optionalNumber(body, "seed", { integer: true });
  const maxTokens = optionalNumber(body, maxTokensField, { integer: true, min: 1, max: UINT32 - 1 });
  const stop = optionalStop(body);
  checkStop(stop, caps);
  return create(SamplingParamsSchema, {
    maxTokens,
    temperature: optionalNumber(body, "temperature", { min: 0, max: 2 }),
    topP: optionalNumber(body, "top_p", { min: 0, max: 1 }),
    topK: optionalNumber(body, "top_k", { integer: true, min: 0, max: UINT32 - 1 }),
    seed: seed === undefined ? undefined : ((seed % UINT32) + UINT32) % UINT32,
    stop,
    frequencyPenalty: optionalNumber(body, "frequency_penalty", { min: -2, max: 2 }),
    presencePenalty: optionalNumber(body, "presence_penalty", { min: -2, max: 2 }),
  });
}
