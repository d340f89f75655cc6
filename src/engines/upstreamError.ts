import { SmmfError } from "../errors/SmmfError.js";

/** `text` with every occurrence of each secret replaced, so that no error or log line carries one. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join("[redacted]");
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
  return body.slice(0, 300);
}

/**
 * An upstream's HTTP error as an SMMF error: 400/422 → invalid_argument with the upstream's message (or
 * context_length_exceeded); 429 → resource_exhausted (so the gateway tries another instance), with the
 * upstream's Retry-After; 401/403, 404 and 5xx → unavailable (this instance cannot serve it; another may).
 * Secrets are removed from every message.
 */
export function upstreamError(status: number, body: string, retryAfter: string | undefined, secrets: readonly string[], upstream: string): SmmfError {
  const message = redact(messageOf(body), secrets).trim();
  if (status === 400 || status === 422 || status === 413) {
    if (/maximum context length|context length|too many tokens/i.test(message)) return new SmmfError("context_length_exceeded", message);
    return new SmmfError("invalid_argument", `upstream rejected the request: ${message || `HTTP ${status}`}`);
  }
  if (status === 429) {
    const seconds = retryAfter && /^\d+$/.test(retryAfter) ? Number(retryAfter) : 1;
    return new SmmfError("resource_exhausted", `upstream ${upstream} is rate limiting (HTTP 429); retry later`, { retryAfterSeconds: seconds });
  }
  if (status === 401 || status === 403) return new SmmfError("unavailable", `upstream ${upstream} refused the credentials (HTTP ${status})`);
  if (status === 404) return new SmmfError("unavailable", `upstream ${upstream} does not know the route or model (HTTP 404)${message ? `: ${message}` : ""}`);
  return new SmmfError("unavailable", `upstream ${upstream} failed (HTTP ${status})${message ? `: ${message}` : ""}`);
}
