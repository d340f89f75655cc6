import { toSmmfError } from "./SmmfError.js";

/** For RPC handlers: any thrown value as a ConnectError carrying the SMMF code (internal details are not sent). */
export function asConnectError(err: unknown): Error {
  return toSmmfError(err).toConnectError();
}
