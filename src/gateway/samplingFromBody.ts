import { create } from "@bufbuild/protobuf";
import { SamplingParamsSchema, type SamplingParams } from "../gen/smmf/v1/inference_pb.js";
import { optionalNumber, optionalStop, rejectUnsupported } from "./fields.js";
import { checkStop, DEFAULT_REQUEST_CAPS, type RequestCaps } from "./requestCaps.js";

const UINT32 = 2 ** 32;

/** Sampling fields shared by /v1/chat/completions and /v1/completions. */
export function samplingFromBody(body: Record<string, unknown>, maxTokensField: "max_tokens" | "max_completion_tokens" = "max_tokens", caps: RequestCaps = DEFAULT_REQUEST_CAPS): SamplingParams {
  rejectUnsupported(body, {
    n: (v) => v === 1,
    logprobs: (v) => v === false,
    top_logprobs: (v) => v === 0,
    best_of: (v) => v === 1,
    echo: (v) => v === false,
    logit_bias: (v) => typeof v === "object" && v !== null && Object.keys(v).length === 0,
    tools: (v) => Array.isArray(v) && v.length === 0,
  });
  if (body.n !== undefined && body.n !== null) optionalNumber(body, "n", { integer: true, min: 1, max: 1 });
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
