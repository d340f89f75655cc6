import type { ConnectError } from "@connectrpc/connect";
import { codeFromGrpc, errorTable, isErrorCode, type ErrorCode } from "./errorTable.js";

/** Metadata key that carries the SMMF error code (and param) across gRPC hops. */
export const CODE_HEADER = "smmf-error-code";
export const PARAM_HEADER = "smmf-error-param";
export const RETRY_AFTER_HEADER = "smmf-retry-after";
/** Node errors that mean the other side went away mid-response. */
const PEER_GONE = new Set(["ERR_STREAM_DESTROYED", "ERR_HTTP2_STREAM_ERROR", "ERR_STREAM_WRITE_AFTER_END", "ERR_STREAM_PREMATURE_CLOSE", "ECONNRESET", "EPIPE"]);

/** The one error type of SMMF: a code from a closed set, a message safe to show, and the offending parameter. */
export class SmmfError extends Error {
  readonly code: ErrorCode;
  readonly param: string | null;
  /** For resource_exhausted: when to try again (the Retry-After header), in seconds. */
  readonly retryAfterSeconds?: number;

  constructor(code: ErrorCode, message: string, options: { param?: string | null; cause?: unknown; retryAfterSeconds?: number } = {}) {
    super(message, { cause: options.cause });
    this.name = "SmmfError";
    this.code = code;
    this.param = options.param ?? null;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get httpStatus(): number {
    return errorTable[this.code].http;
  }

  /** The gRPC status code. */
  get grpcCode(): number {
    return errorTable[this.code].grpc;
  }

  /** The Anthropic-shaped answer: its status (529 for overloaded) and `{"type":"error","error":{"type","message"}}`. */
  toAnthropic(): { status: number; body: { type: "error"; error: { type: string; message: string } } } {
    const info = errorTable[this.code];
    return { status: info.anthropicHttp ?? info.http, body: { type: "error", error: { type: info.anthropic, message: this.message } } };
  }

  /** The OpenAI-shaped body: `{"error":{"message","type","param","code"}}`. */
  toOpenAiBody(): { error: { message: string; type: string; param: string | null; code: string } } {
    return { error: { message: this.message, type: errorTable[this.code].type, param: this.param, code: this.code } };
  }
}

/**
 * Whether a value is a ConnectError, told as connect-es itself tells one from another copy of the package
 * (its name and fields), so that this module does not load connect-es (see errorTable's Code).
 */
function isConnectError(v: unknown): v is ConnectError {
  return v instanceof Error && v.name === "ConnectError" && typeof (v as ConnectError).code === "number" && (v as ConnectError).metadata instanceof Headers && Array.isArray((v as ConnectError).details);
}

/** Reads any thrown value as an SmmfError; unknown errors become `internal` without leaking their text. */
export function toSmmfError(err: unknown): SmmfError {
  if (err instanceof SmmfError) return err;
  if (isConnectError(err)) {
    const code = err.metadata.get(CODE_HEADER);
    const param = err.metadata.get(PARAM_HEADER);
    const retryAfter = err.metadata.get(RETRY_AFTER_HEADER);
    const retryAfterSeconds = retryAfter && /^\d+$/.test(retryAfter) ? Number(retryAfter) : undefined;
    if (code && isErrorCode(code)) return new SmmfError(code, err.rawMessage, { param, cause: err, retryAfterSeconds });
    const mapped = codeFromGrpc[err.code] ?? "internal";
    const message = mapped === "internal" ? "internal error" : mapped === "unavailable" ? `upstream unavailable: ${err.rawMessage}` : err.rawMessage;
    return new SmmfError(mapped, message, { cause: err });
  }
  if (err instanceof Error && (err.name === "AbortError" || PEER_GONE.has((err as NodeJS.ErrnoException).code ?? ""))) {
    return new SmmfError("cancelled", "request cancelled", { cause: err });
  }
  return new SmmfError("internal", "internal error", { cause: err });
}
