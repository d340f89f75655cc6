import { SmmfError } from "../errors/SmmfError.js";

/** `text` with every occurrence of each secret replaced, so that no error or log line carries one. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join("[redacted]");
  return out;
}

/** Patterns of credentials an upstream may quote back (bearer tokens, `sk-...` keys, `api_key=...`). */
const SECRET_LIKE: readonly [RegExp, string][] = [
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, "$1 [redacted]"],
  [/\b(?:sk|rk|pk)[-_][A-Za-z0-9_-]{12,}/g, "[redacted]"],
  [/\bsmmf-k[A-Za-z0-9_-]{8,}/g, "[redacted]"],
  [/\b(api[-_]?key|access[-_]?token|secret|password|authorization)(["']?\s*[:=]\s*["']?)[^\s"',;}]+/gi, "$1$2[redacted]"],
];

/** `text` without the secrets, nor anything that looks like a credential: for log lines only. */
export function redactForLog(text: string, secrets: readonly string[]): string {
  let out = redact(text, secrets);
  for (const [pattern, replacement] of SECRET_LIKE) out = out.replace(pattern, replacement);
  return out;
}

/** The message an OpenAI-style (or vLLM, TGI, Ollama) error body carries, if any. */
function messageOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown; message?: unknown; detail?: unknown };
    const error = parsed.error;
    if (typeof error === "string") return error;
    if (error && typeof error === "object" && typeof (error as { message?: unknown }).message === "string") return (error as { message: string }).message;
    if (typeof parsed.message === "string") return parsed.message;
    if (typeof parsed.detail === "string") return parsed.detail;
  } catch {
    // not JSON
  }
  return body;
}

/**
 * What an upstream's error body says, for the worker's log: its message (at most 500 characters), with the
 * secrets and anything that looks like a credential removed. Never for a client's answer.
 */
export function upstreamErrorDetail(body: string, secrets: readonly string[]): string {
  return redactForLog(messageOf(body).slice(0, 500), secrets).trim();
}

/**
 * An upstream's HTTP error as an SMMF error, with a fixed message per class: what the upstream said is for
 * the worker's log (upstreamErrorDetail), never for the client, since it may quote credentials, other
 * tenants' data or internal addresses. 400/413/422 → invalid_argument, or context_length_exceeded when the
 * upstream says the request is longer than its context; 429 → resource_exhausted (so the gateway tries
 * another instance), with the upstream's Retry-After; 401/403, 404 and 5xx → unavailable (this instance
 * cannot serve it; another may).
 */
export function upstreamError(status: number, body: string, retryAfter: string | undefined, upstream: string): SmmfError {
  if (status === 400 || status === 422 || status === 413) {
    if (/maximum context length|context length|context window|context size|too many tokens/i.test(messageOf(body))) {
      return new SmmfError("context_length_exceeded", `the prompt and max_tokens do not fit in the upstream model's context (upstream ${upstream} answered HTTP ${status})`);
    }
    return new SmmfError("invalid_argument", `upstream ${upstream} rejected the request as invalid (HTTP ${status})`);
  }
  if (status === 429) {
    const seconds = retryAfter && /^\d+$/.test(retryAfter) ? Number(retryAfter) : 1;
    return new SmmfError("resource_exhausted", `upstream ${upstream} is rate limiting (HTTP 429); retry later`, { retryAfterSeconds: seconds });
  }
  if (status === 401 || status === 403) return new SmmfError("unavailable", `upstream ${upstream} refused the credentials (HTTP ${status})`);
  if (status === 404) return new SmmfError("unavailable", `upstream ${upstream} does not know the route or model (HTTP 404)`);
  return new SmmfError("unavailable", `upstream ${upstream} failed (HTTP ${status})`);
}
