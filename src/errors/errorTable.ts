import type { Code as ConnectCode } from "@connectrpc/connect";

/**
 * The gRPC status codes (the numbers every gRPC implementation uses; connect-es's `Code` enum has the same
 * values). Written out here so that the error table does not load connect-es: the CLI's help, the settings
 * and the telemetry thread use SmmfError without any RPC. SmmfError.test.ts checks them against `Code`.
 */
export const Code = {
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  OutOfRange: 11,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const satisfies Record<string, ConnectCode>;
type Code = ConnectCode;

/** The closed set of SMMF error codes. */
export type ErrorCode =
  | "invalid_argument"
  | "context_length_exceeded"
  | "model_not_found"
  | "not_found"
  | "already_exists"
  | "invalid_api_key"
  | "permission_denied"
  | "method_not_allowed"
  | "payload_too_large"
  | "unsupported_media_type"
  | "resource_exhausted"
  | "rate_limit_exceeded"
  | "unavailable"
  | "cancelled"
  | "deadline_exceeded"
  | "failed_precondition"
  | "unimplemented"
  | "internal";

/** OpenAI error `type` values SMMF uses. */
export type OpenAiErrorType =
  | "invalid_request_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error"
  | "service_unavailable_error";

/** Anthropic error `type` values (the Messages API's error shape). */
export type AnthropicErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "request_too_large"
  | "rate_limit_error"
  | "api_error"
  | "overloaded_error";

export interface ErrorCodeInfo {
  /** HTTP status on the REST API. */
  http: number;
  /** OpenAI `error.type`. */
  type: OpenAiErrorType;
  /** Anthropic `error.type`, and its HTTP status where Anthropic's differs (529 for overloaded). */
  anthropic: AnthropicErrorType;
  anthropicHttp?: number;
  /** gRPC status code. */
  grpc: Code;
}

/** One table: SMMF code → HTTP status, OpenAI error type and gRPC code. */
export const errorTable: Readonly<Record<ErrorCode, ErrorCodeInfo>> = {
  invalid_argument: { http: 400, type: "invalid_request_error", anthropic: "invalid_request_error", grpc: Code.InvalidArgument },
  context_length_exceeded: { http: 400, type: "invalid_request_error", anthropic: "invalid_request_error", grpc: Code.InvalidArgument },
  model_not_found: { http: 404, type: "invalid_request_error", anthropic: "not_found_error", grpc: Code.NotFound },
  not_found: { http: 404, type: "not_found_error", anthropic: "not_found_error", grpc: Code.NotFound },
  already_exists: { http: 409, type: "invalid_request_error", anthropic: "invalid_request_error", grpc: Code.AlreadyExists },
  // Missing, unknown, expired or revoked API key (OpenAI answers 401 with this code too).
  invalid_api_key: { http: 401, type: "invalid_request_error", anthropic: "authentication_error", grpc: Code.Unauthenticated },
  // A valid key whose role does not allow the call.
  permission_denied: { http: 403, type: "invalid_request_error", anthropic: "permission_error", grpc: Code.PermissionDenied },
  method_not_allowed: { http: 405, type: "invalid_request_error", anthropic: "invalid_request_error", grpc: Code.Unimplemented },
  payload_too_large: { http: 413, type: "invalid_request_error", anthropic: "request_too_large", grpc: Code.InvalidArgument },
  unsupported_media_type: { http: 415, type: "invalid_request_error", anthropic: "invalid_request_error", grpc: Code.InvalidArgument },
  resource_exhausted: { http: 429, type: "rate_limit_error", anthropic: "rate_limit_error", grpc: Code.ResourceExhausted },
  // An API key's requests or tokens per minute are used up (OpenAI's code for the same).
  rate_limit_exceeded: { http: 429, type: "rate_limit_error", anthropic: "rate_limit_error", grpc: Code.ResourceExhausted },
  unavailable: { http: 503, type: "service_unavailable_error", anthropic: "overloaded_error", anthropicHttp: 529, grpc: Code.Unavailable },
  cancelled: { http: 499, type: "invalid_request_error", anthropic: "invalid_request_error", grpc: Code.Canceled },
  deadline_exceeded: { http: 504, type: "server_error", anthropic: "api_error", grpc: Code.DeadlineExceeded },
  failed_precondition: { http: 400, type: "invalid_request_error", anthropic: "invalid_request_error", grpc: Code.FailedPrecondition },
  unimplemented: { http: 501, type: "invalid_request_error", anthropic: "invalid_request_error", grpc: Code.Unimplemented },
  internal: { http: 500, type: "server_error", anthropic: "api_error", grpc: Code.Internal },
};

/** gRPC code → SMMF code, for errors that carry no SMMF code of their own. */
export const codeFromGrpc: Readonly<Partial<Record<Code, ErrorCode>>> = {
  [Code.Canceled]: "cancelled",
  [Code.InvalidArgument]: "invalid_argument",
  [Code.DeadlineExceeded]: "deadline_exceeded",
  [Code.NotFound]: "not_found",
  [Code.AlreadyExists]: "already_exists",
  [Code.Unauthenticated]: "invalid_api_key",
  [Code.PermissionDenied]: "permission_denied",
  [Code.ResourceExhausted]: "resource_exhausted",
  [Code.FailedPrecondition]: "failed_precondition",
  [Code.OutOfRange]: "invalid_argument",
  [Code.Unimplemented]: "unimplemented",
  [Code.Unavailable]: "unavailable",
  [Code.Aborted]: "unavailable",
};

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(errorTable, value);
}
