import { create } from "@bufbuild/protobuf";
import { EmbedRequestSchema, type EmbedRequest, type EmbedResponse } from "../gen/smmf/v1/inference_pb.js";
import { invalidField, optionalNumber, requiredString } from "./fields.js";
import { checkEmbedInputs, DEFAULT_REQUEST_CAPS, type RequestCaps } from "./requestCaps.js";

export interface EmbeddingsRequest {
  request: EmbedRequest;
  encoding: "float" | "base64";
  dimensions?: number;
}

/** Reads a /v1/embeddings body. */
export function parseEmbeddingsRequest(body: Record<string, unknown>, requestId: string, caps: RequestCaps = DEFAULT_REQUEST_CAPS): EmbeddingsRequest {
  const model = requiredString(body, "model");
  const input = body.input;
  let inputs: string[];
  if (input === undefined || input === null) throw invalidField("input", "Missing required parameter: 'input'.");
  if (typeof input === "string") inputs = [input];
  else if (Array.isArray(input) && input.length > 0 && input.every((s) => typeof s === "string")) inputs = input as string[];
  else throw invalidField("input", "'input' must be a non-empty string or a non-empty array of strings (token arrays are not supported).");
  checkEmbedInputs(inputs, caps);
  if (inputs.some((s) => s.length === 0)) throw invalidField("input", "'input' strings must not be empty.");
  const encoding = body.encoding_format ?? "float";
  if (encoding !== "float" && encoding !== "base64") throw invalidField("encoding_format", "'encoding_format' must be 'float' or 'base64'.");
  const dimensions = optionalNumber(body, "dimensions", { integer: true, min: 1 });
  return { request: create(EmbedRequestSchema, { model, inputs, requestId }), encoding, dimensions };
}

export function embeddingsResponse(req: EmbeddingsRequest, res: EmbedResponse): unknown {
  const size = res.embeddings[0]?.values.length ?? 0;
  if (req.dimensions !== undefined && req.dimensions !== size) {
    throw invalidField("dimensions", `This model's embeddings have ${size} dimensions; 'dimensions' must be ${size} or left out.`);
  }
  const promptTokens = res.usage?.promptTokens ?? 0;
  return {
    object: "list",
    model: req.request.model,
    data: res.embeddings.map((e, index) => ({
      object: "embedding",
      index,
      embedding: req.encoding === "base64" ? Buffer.from(Float32Array.from(e.values).buffer).toString("base64") : e.values,
    })),
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  };
}
