import { describe, it, expect } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { SmmfError, toSmmfError } from "./SmmfError.js";
import { asConnectError, connectErrorOf } from "./asConnectError.js";
import { Code as GrpcCode, errorTable, type ErrorCode } from "./errorTable.js";

const ALL_CODES = Object.keys(errorTable) as ErrorCode[];

describe("SmmfError", () => {
  it("is an Error with name, code, message and param (null by default)", () => {
    const err = new SmmfError("not_found", "nothing here");
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe("SmmfError");
    expect(err.code).toBe("not_found");
    expect(err.message).toBe("nothing here");
    expect(err.param).toBeNull();
  });

  it("keeps param and cause", () => {
    const cause = new Error("root");
    const err = new SmmfError("invalid_argument", "bad", { param: "temperature", cause });
    expect(err.param).toBe("temperature");
    expect(err.cause).toBe(cause);
  });

  it("toOpenAiBody has the OpenAI shape", () => {
    const err = new SmmfError("model_not_found", "The model 'x' does not exist", { param: "model" });
    expect(err.toOpenAiBody()).toStrictEqual({
      error: { message: "The model 'x' does not exist", type: "invalid_request_error", param: "model", code: "model_not_found" },
    });
  });

  it("toOpenAiBody uses null param and the table type", () => {
    expect(new SmmfError("resource_exhausted", "busy").toOpenAiBody()).toStrictEqual({
      error: { message: "busy", type: "rate_limit_error", param: null, code: "resource_exhausted" },
    });
    expect(JSON.parse(JSON.stringify(new SmmfError("internal", "x").toOpenAiBody()))).toEqual({
      error: { message: "x", type: "server_error", param: null, code: "internal" },
    });
  });

  it.each(ALL_CODES)("connectErrorOf → toSmmfError round-trips %s with message and param", (code) => {
    const back = toSmmfError(connectErrorOf(new SmmfError(code, `message for ${code}`, { param: "some.param[0]" })));
    expect(back).toBeInstanceOf(SmmfError);
    expect(back.code).toBe(code);
    expect(back.message).toBe(`message for ${code}`);
    expect(back.param).toBe("some.param[0]");
  });

  it("round-trips a null param as null", () => {
    const back = toSmmfError(connectErrorOf(new SmmfError("payload_too_large", "too big")));
    expect(back.code).toBe("payload_too_large");
    expect(back.param).toBeNull();
  });

  it("round-trips codes that share a gRPC code (distinguished only by metadata)", () => {
    // model_not_found and not_found both use NotFound; context_length_exceeded shares InvalidArgument.
    expect(toSmmfError(connectErrorOf(new SmmfError("model_not_found", "m"))).code).toBe("model_not_found");
    expect(toSmmfError(connectErrorOf(new SmmfError("context_length_exceeded", "m"))).code).toBe("context_length_exceeded");
    expect(toSmmfError(connectErrorOf(new SmmfError("method_not_allowed", "m"))).code).toBe("method_not_allowed");
  });
});

describe("toSmmfError", () => {
  it("returns an SmmfError unchanged", () => {
    const err = new SmmfError("unavailable", "x");
    expect(toSmmfError(err)).toBe(err);
  });

  it("maps a ConnectError without SMMF metadata by its gRPC code", () => {
    const cases: [Code, ErrorCode][] = [
      [Code.Canceled, "cancelled"],
      [Code.InvalidArgument, "invalid_argument"],
      [Code.DeadlineExceeded, "deadline_exceeded"],
      [Code.NotFound, "not_found"],
      [Code.ResourceExhausted, "resource_exhausted"],
      [Code.FailedPrecondition, "failed_precondition"],
      [Code.OutOfRange, "invalid_argument"],
      [Code.Unimplemented, "unimplemented"],
      [Code.Aborted, "unavailable"],
    ];
    for (const [grpc, expected] of cases) {
      const cause = new ConnectError("upstream said no", grpc);
      const err = toSmmfError(cause);
      expect(err.code, Code[grpc]).toBe(expected);
      expect(err.param).toBeNull();
      expect(err.cause).toBe(cause);
    }
  });

  it("keeps the raw message of a mapped ConnectError (without the [code] prefix)", () => {
    const err = toSmmfError(new ConnectError("bad field", Code.InvalidArgument));
    expect(err.message).toBe("bad field");
  });

  it("prefixes unavailable ConnectErrors", () => {
    const err = toSmmfError(new ConnectError("connect ECONNREFUSED", Code.Unavailable));
    expect(err.code).toBe("unavailable");
    expect(err.message).toBe("upstream unavailable: connect ECONNREFUSED");
  });

  it("maps UNAUTHENTICATED and PERMISSION_DENIED from any gRPC peer to invalid_api_key (401) and permission_denied (403)", () => {
    expect(toSmmfError(new ConnectError("no key", Code.Unauthenticated))).toMatchObject({ code: "invalid_api_key", httpStatus: 401, message: "no key" });
    expect(toSmmfError(new ConnectError("not yours", Code.PermissionDenied))).toMatchObject({ code: "permission_denied", httpStatus: 403 });
  });

  it("maps a ConnectError with an unmapped gRPC code to internal", () => {
    expect(toSmmfError(new ConnectError("x", Code.Unknown)).code).toBe("internal");
    expect(toSmmfError(new ConnectError("x", Code.DataLoss)).code).toBe("internal");
    expect(toSmmfError(new ConnectError("x", Code.Internal)).code).toBe("internal");
  });

  it("ignores an unknown smmf-error-code in metadata and falls back to the gRPC code", () => {
    const ce = new ConnectError("m", Code.NotFound, new Headers({ "smmf-error-code": "not_a_code", "smmf-error-param": "p" }));
    const err = toSmmfError(ce);
    expect(err.code).toBe("not_found");
    expect(err.param).toBeNull();
  });

  it("prefers the SMMF metadata code over the gRPC code", () => {
    const ce = new ConnectError("m", Code.Internal, new Headers({ "smmf-error-code": "resource_exhausted" }));
    expect(toSmmfError(ce).code).toBe("resource_exhausted");
  });

  it("turns an AbortError into cancelled", () => {
    const abort = new DOMException("The operation was aborted", "AbortError");
    const err = toSmmfError(abort);
    expect(err.code).toBe("cancelled");
    expect(err.message).toBe("request cancelled");
    const named = Object.assign(new Error("aborted"), { name: "AbortError" });
    expect(toSmmfError(named).code).toBe("cancelled");
  });

  it("turns unknown errors into internal without leaking their text", () => {
    const secret = new Error("ENOENT: /home/secret/path/model.gguf");
    const err = toSmmfError(secret);
    expect(err.code).toBe("internal");
    expect(err.message).toBe("internal error");
    expect(err.message).not.toContain("secret");
    expect(err.toOpenAiBody().error.message).toBe("internal error");
    expect(err.cause).toBe(secret);
  });

  it("turns non-Error thrown values into internal", () => {
    for (const value of ["a string with details", 42, null, undefined, { message: "obj" }]) {
      const err = toSmmfError(value);
      expect(err.code).toBe("internal");
      expect(err.message).toBe("internal error");
    }
  });
});

describe("asConnectError", () => {
  it("hides internal details and keeps the SMMF code", () => {
    const ce = asConnectError(new TypeError("cannot read properties of undefined (reading 'secret')"));
    expect(ce).toBeInstanceOf(ConnectError);
    expect((ce as ConnectError).code).toBe(Code.Internal);
    expect((ce as ConnectError).rawMessage).toBe("internal error");
    expect(toSmmfError(ce).code).toBe("internal");
  });

  it("passes an SmmfError through with its code and param", () => {
    const ce = asConnectError(new SmmfError("invalid_argument", "bad", { param: "top_p" })) as ConnectError;
    expect(ce.code).toBe(Code.InvalidArgument);
    const back = toSmmfError(ce);
    expect(back.code).toBe("invalid_argument");
    expect(back.param).toBe("top_p");
  });
});

describe("errorTable's gRPC codes", () => {
  it("are connect-es's Code values, name for name", () => {
    for (const [name, value] of Object.entries(GrpcCode)) expect(Code[name as keyof typeof Code], name).toBe(value);
    expect(Object.keys(GrpcCode).length).toBe(Object.values(Code).filter((v) => typeof v === "number").length);
  });

  it("toSmmfError tells a ConnectError from a copy of connect-es it did not load (by name and fields)", () => {
    const foreign = Object.assign(new Error("denied"), { name: "ConnectError", code: Code.PermissionDenied, rawMessage: "denied", metadata: new Headers(), details: [] });
    expect(toSmmfError(foreign)).toMatchObject({ code: "permission_denied", message: "denied" });
    expect(toSmmfError(new ConnectError("gone", Code.Unavailable)).code).toBe("unavailable");
  });
});

