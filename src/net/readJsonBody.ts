import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { SmmfError } from "../errors/SmmfError.js";

/**
 * Reads a JSON object body of at most `limit` bytes. The body must say it is JSON (`Content-Type:
 * application/json`): a web page can send other types to any address without asking (a "simple" request), so
 * reading them as JSON would let any page a developer opens post to a local SMMF.
 */
export async function readJsonBody(req: IncomingMessage | Http2ServerRequest, limit: number): Promise<Record<string, unknown>> {
  const type = req.headers["content-type"];
  if (type === undefined) throw new SmmfError("unsupported_media_type", "Content-Type must be application/json; the request has none");
  if (!/^application\/json\b/i.test(type) && !/\+json\b/i.test(type)) {
    throw new SmmfError("unsupported_media_type", `Content-Type must be application/json; got '${type.slice(0, 100)}'`);
  }
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  checkDepth(text);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new SmmfError("invalid_argument", `We could not parse the JSON body of your request: ${(err as Error).message}`);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new SmmfError("invalid_argument", "The request body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

/** Deepest nesting of arrays and objects a body may have: deeper ones break what walks them recursively. */
export const MAX_JSON_DEPTH = 64;

/** Refuses JSON nested deeper than MAX_JSON_DEPTH, scanning the text once (brackets inside strings do not count). */
function checkDepth(text: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) {
      if (++depth > MAX_JSON_DEPTH) throw new SmmfError("invalid_argument", `The JSON body is nested more than ${MAX_JSON_DEPTH} levels deep`);
    } else if (c === 93 || c === 125) depth--;
  }
}

function tooLarge(limit: number): SmmfError {
  return new SmmfError("payload_too_large", `The request body is larger than the limit of ${limit} bytes`);
}
