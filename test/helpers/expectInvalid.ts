import { expect } from "vitest";
import { SmmfError } from "../../src/errors/SmmfError.js";

/** Runs `fn`, expects it to throw an invalid_argument SmmfError (naming `param` when given), and returns it. */
export function expectInvalid(fn: () => unknown, param?: string): SmmfError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SmmfError);
    expect((err as SmmfError).code).toBe("invalid_argument");
    if (param !== undefined) expect((err as SmmfError).param).toBe(param);
    return err as SmmfError;
  }
  throw new Error("expected an invalid_argument error");
}
