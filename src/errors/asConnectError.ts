import { ConnectError } from "@connectrpc/connect";
import { errorTable } from "./errorTable.js";
import { CODE_HEADER, PARAM_HEADER, RETRY_AFTER_HEADER, toSmmfError, type SmmfError } from "./SmmfError.js";

/** A ConnectError with the gRPC code from the table and the SMMF code (and param, Retry-After) in metadata. */
export function connectErrorOf(err: SmmfError): ConnectError {
  const metadata = new Headers({ [CODE_HEADER]: err.code });
  if (err.param) metadata.set(PARAM_HEADER, err.param);
  if (err.retryAfterSeconds !== undefined) metadata.set(RETRY_AFTER_HEADER, String(err.retryAfterSeconds));
  return new ConnectError(err.message, errorTable[err.code].grpc, metadata);
}

/** For RPC handlers: any thrown value as a ConnectError carrying the SMMF code (internal details are not sent). */
export function asConnectError(err: unknown): Error {
  return connectErrorOf(toSmmfError(err));
}
