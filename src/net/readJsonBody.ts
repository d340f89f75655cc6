import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { SmmfError } from "../errors/SmmfError.js";
import { drainBody } from "./drainBody.js";

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
  const text = (await readBody(req, limit)).toString("utf8");
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

/**
 * The body, at most `limit` bytes. A larger one is refused as soon as it is known to be (by Content-Length, or
 * once past the limit), and its rest is read and thrown away (drainBody) so the client can read the 413.
 */
function readBody(req: IncomingMessage | Http2ServerRequest, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    drainBody(req);
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      done();
      drainBody(req);
      reject(tooLarge(limit));
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      done();
      reject(new SmmfError("cancelled", `the request body was not received: ${err.message}`));
    };
    const onAborted = () => onError(new Error("the client went away"));
    const done = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("aborted", onAborted);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("aborted", onAborted);
  });
}

function tooLarge(limit: number): SmmfError {
  return new SmmfError("payload_too_large", `The request body is larger than the limit of ${limit} bytes`);
}
