import { asConnectError } from "./asConnectError.js";

/** Runs an RPC handler's body; whatever it throws leaves as a ConnectError carrying the SMMF code. */
export async function rpc<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    throw asConnectError(err);
  }
}
