import { describe, it, expect } from "vitest";
import { Code } from "@connectrpc/connect";
import { codeFromGrpc, errorTable, isErrorCode, type ErrorCode } from "./errorTable.js";

const ALL_CODES: ErrorCode[] = [
  "invalid_argument",
  "context_length_exceeded",
  "model_not_found",
  "not_found",
  "method_not_allowed",
  "payload_too_large",
  "unsupported_media_type",
  "resource_exhausted",
  "rate_limit_exceeded",
  "unavailable",
  "already_exists",
  "invalid_api_key",
  "permission_denied",
  "cancelled",
  "deadline_exceeded",
  "failed_precondition",
  "unimplemented",
  "internal",
];

/** The contract clients rely on (README, "Errors"): HTTP status, OpenAI type and gRPC code of each code. */
const EXPECTED: Record<ErrorCode, [number, string, Code]> = {
  invalid_argument: [400, "invalid_request_error", Code.InvalidArgument],
  context_length_exceeded: [400, "invalid_request_error", Code.InvalidArgument],
  model_not_found: [404, "invalid_request_error", Code.NotFound],
  not_found: [404, "not_found_error", Code.NotFound],
  already_exists: [409, "invalid_request_error", Code.AlreadyExists],
  invalid_api_key: [401, "invalid_request_error", Code.Unauthenticated],
  permission_denied: [403, "invalid_request_error", Code.PermissionDenied],
  method_not_allowed: [405, "invalid_request_error", Code.Unimplemented],
  payload_too_large: [413, "invalid_request_error", Code.InvalidArgument],
  unsupported_media_type: [415, "invalid_request_error", Code.InvalidArgument],
  resource_exhausted: [429, "rate_limit_error", Code.ResourceExhausted],
  rate_limit_exceeded: [429, "rate_limit_error", Code.ResourceExhausted],
  unavailable: [503, "service_unavailable_error", Code.Unavailable],
  cancelled: [499, "invalid_request_error", Code.Canceled],
  deadline_exceeded: [504, "server_error", Code.DeadlineExceeded],
  failed_precondition: [400, "invalid_request_error", Code.FailedPrecondition],
  unimplemented: [501, "invalid_request_error", Code.Unimplemented],
  internal: [500, "server_error", Code.Internal],
};

describe("errorTable", () => {
  it("has exactly the closed set of codes", () => {
    expect(Object.keys(errorTable).sort()).toEqual([...ALL_CODES].sort());
  });

  it("maps every code to the documented HTTP status, OpenAI type and gRPC code", () => {
    const actual = Object.fromEntries(Object.entries(errorTable).map(([code, e]) => [code, [e.http, e.type, e.grpc]]));
    expect(actual).toEqual(EXPECTED);
  });

  it("uses only 4xx/5xx statuses and known OpenAI types", () => {
    const types = new Set(["invalid_request_error", "not_found_error", "rate_limit_error", "server_error", "service_unavailable_error"]);
    for (const code of ALL_CODES) {
      expect(errorTable[code].http).toBeGreaterThanOrEqual(400);
      expect(errorTable[code].http).toBeLessThan(600);
      expect(types.has(errorTable[code].type)).toBe(true);
    }
  });

  it("uses only Anthropic's error types, with its statuses (529 only for overloaded)", () => {
    const types = new Set(["invalid_request_error", "authentication_error", "permission_error", "not_found_error", "request_too_large", "rate_limit_error", "api_error", "overloaded_error"]);
    for (const code of ALL_CODES) {
      expect(types.has(errorTable[code].anthropic), code).toBe(true);
      if (errorTable[code].anthropicHttp !== undefined) expect([code, errorTable[code].anthropicHttp]).toEqual(["unavailable", 529]);
    }
  });
});

describe("isErrorCode", () => {
  it("accepts every table code", () => {
    for (const code of ALL_CODES) expect(isErrorCode(code)).toBe(true);
  });

  it("rejects unknown strings and inherited Object properties", () => {
    expect(isErrorCode("bogus")).toBe(false);
    expect(isErrorCode("")).toBe(false);
    expect(isErrorCode("toString")).toBe(false);
    expect(isErrorCode("__proto__")).toBe(false);
    expect(isErrorCode("INTERNAL")).toBe(false);
  });
});

describe("codeFromGrpc", () => {
  it("maps gRPC codes to SMMF codes", () => {
    expect(codeFromGrpc[Code.Canceled]).toBe("cancelled");
    expect(codeFromGrpc[Code.InvalidArgument]).toBe("invalid_argument");
    expect(codeFromGrpc[Code.DeadlineExceeded]).toBe("deadline_exceeded");
    expect(codeFromGrpc[Code.NotFound]).toBe("not_found");
    expect(codeFromGrpc[Code.ResourceExhausted]).toBe("resource_exhausted");
    expect(codeFromGrpc[Code.FailedPrecondition]).toBe("failed_precondition");
    expect(codeFromGrpc[Code.OutOfRange]).toBe("invalid_argument");
    expect(codeFromGrpc[Code.Unimplemented]).toBe("unimplemented");
    expect(codeFromGrpc[Code.Unavailable]).toBe("unavailable");
    expect(codeFromGrpc[Code.Aborted]).toBe("unavailable");
  });

  it("leaves codes without a safe mapping undefined (callers fall back to internal)", () => {
    expect(codeFromGrpc[Code.Unknown]).toBeUndefined();
    expect(codeFromGrpc[Code.Internal]).toBeUndefined();
    expect(codeFromGrpc[Code.DataLoss]).toBeUndefined();
  });

  it("every mapped code is a valid table code", () => {
    for (const value of Object.values(codeFromGrpc)) expect(isErrorCode(value as string)).toBe(true);
  });
});
