import { create } from "@bufbuild/protobuf";
import { GenerateStartSchema } from "../gen/smmf/v1/inference_pb.js";
import { parseGenerateStart } from "../worker/parseGenerateStart.js";
import { includeUsage } from "./chatCompletions.js";
import { invalidField, optionalBoolean, rejectUnsupported, requiredString } from "./fields.js";
import { DEFAULT_REQUEST_CAPS, PromptChars, type RequestCaps } from "./requestCaps.js";
import { samplingFromBody } from "./samplingFromBody.js";
import type { CompletionFormat, GenerationRequest } from "./streamGeneration.js";

function parsePrompt(value: unknown): string {
  if (value === undefined || value === null) throw invalidField("prompt", "Missing required parameter: 'prompt'.");
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === "string") return value[0];
  if (Array.isArray(value) && value.every((p) => typeof p === "string")) {
    throw invalidField("prompt", "Only one prompt per request is supported; send one request per prompt.");
  }
  throw invalidField("prompt", "'prompt' must be a string (token arrays are not supported).");
}

/** Reads a /v1/completions body into a GenerationRequest. */
export function parseCompletionRequest(body: Record<string, unknown>, requestId: string, caps: RequestCaps = DEFAULT_REQUEST_CAPS): GenerationRequest {
  const model = requiredString(body, "model");
  const prompt = parsePrompt(body.prompt);
  new PromptChars(caps, "prompt").add(prompt);
  rejectUnsupported(body, { suffix: (v) => v === "" });
  const start = create(GenerateStartSchema, {
    model,
    input: { case: "prompt", value: prompt },
    params: samplingFromBody(body, "max_tokens", caps),
    requestId,
  });
  parseGenerateStart(start);
  const stream = optionalBoolean(body, "stream") ?? false;
  return { start, stream, includeUsage: stream && includeUsage(body), requestId };
}

export function completionFormat(id: string, model: string, created: number): CompletionFormat {
  const choice = (text: string, finishReason: string | null) => ({ index: 0, text, logprobs: null, finish_reason: finishReason });
  return {
    chunk: (text) => ({ id, object: "text_completion", created, model, system_fingerprint: null, choices: [choice(text, null)] }),
    closing: (finishReason) => ({ id, object: "text_completion", created, model, system_fingerprint: null, choices: [choice("", finishReason)] }),
    usageChunk: (usage) => ({ id, object: "text_completion", created, model, system_fingerprint: null, choices: [], usage }),
    whole: (text, finishReason, usage) => ({ id, object: "text_completion", created, model, system_fingerprint: null, choices: [choice(text, finishReason)], usage }),
  };
}
