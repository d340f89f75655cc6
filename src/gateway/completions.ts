import { create } from "@bufbuild/protobuf";
import { GenerateStartSchema } from "../gen/smmf/v1/inference_pb.js";
import { parseGenerateStart } from "../worker/parseGenerateStart.js";
import { includeUsage } from "./chatCompletions.js";
import { extraFields, invalidField, optionalBoolean, optionalNumber, requiredString } from "./fields.js";
import { DEFAULT_REQUEST_CAPS, PromptChars, type RequestCaps } from "./requestCaps.js";
import { choicesFromBody, samplingFromBody, SAMPLING_FIELDS } from "./samplingFromBody.js";
import type { CompletionFormat, GenerationRequest, LogprobJson } from "./streamGeneration.js";

function parsePrompt(value: unknown): string {
  if (value === undefined || value === null) throw invalidField("prompt", "Missing required parameter: 'prompt'.");
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === "string") return value[0];
  if (Array.isArray(value) && value.every((p) => typeof p === "string")) {
    throw invalidField("prompt", "Only one prompt per request is supported; send one request per prompt.");
  }
  throw invalidField("prompt", "'prompt' must be a string (token arrays are not supported).");
}

const COMPLETION_FIELDS = new Set([...SAMPLING_FIELDS, "model", "prompt", "stream", "stream_options", "max_tokens", "logprobs"]);

/** Reads a /v1/completions body into a GenerationRequest. */
export function parseCompletionRequest(body: Record<string, unknown>, requestId: string, caps: RequestCaps = DEFAULT_REQUEST_CAPS): GenerationRequest {
  const model = requiredString(body, "model");
  const prompt = parsePrompt(body.prompt);
  const chars = new PromptChars(caps, "prompt");
  chars.add(prompt);
  // The legacy API's `logprobs` is a count: the alternatives to report per token (0 to 5).
  const topLogprobs = optionalNumber(body, "logprobs", { integer: true, min: 0, max: 5 });
  const n = choicesFromBody(body);
  const start = create(GenerateStartSchema, {
    model,
    input: { case: "prompt", value: prompt },
    params: samplingFromBody(body, "max_tokens", caps),
    requestId,
    n,
    logprobs: topLogprobs !== undefined,
    topLogprobs: topLogprobs ?? 0,
    extraJson: extraFields(body, COMPLETION_FIELDS, chars),
  });
  parseGenerateStart(start);
  const stream = optionalBoolean(body, "stream") ?? false;
  return { start, stream, includeUsage: stream && includeUsage(body), requestId, choices: n, logprobs: topLogprobs !== undefined };
}

/** The legacy logprobs object of some tokens; `offset` is the text offset of the first. */
function legacyLogprobs(entries: readonly LogprobJson[], offset: number) {
  const textOffset: number[] = [];
  for (const e of entries) {
    textOffset.push(offset);
    offset += e.token.length;
  }
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top_logprobs.map((t) => [t.token, t.logprob]))),
    text_offset: textOffset,
  };
}

export function completionFormat(id: string, model: string, created: number, logprobs: boolean): CompletionFormat {
  const offsets = new Map<number, number>();
  const choice = (index: number, text: string, finishReason: string | null, lp: object | null) => ({ index, text, logprobs: lp, finish_reason: finishReason });
  const body = (choices: object[]) => ({ id, object: "text_completion", created, model, system_fingerprint: null, choices });
  return {
    content: (index, text, logprob) => {
      let lp: object | null = null;
      if (logprob) {
        const offset = offsets.get(index) ?? 0;
        lp = legacyLogprobs([logprob], offset);
        offsets.set(index, offset + logprob.token.length);
      }
      return body([choice(index, text, null, lp)]);
    },
    closing: (index, finishReason) => body([choice(index, "", finishReason, null)]),
    usageChunk: (usage) => ({ ...body([]), usage }),
    whole: (choices, usage) => ({
      ...body(choices.map((c, index) => choice(index, c.text, c.finishReason, logprobs ? legacyLogprobs(c.logprobs, 0) : null))),
      usage,
    }),
  };
}
