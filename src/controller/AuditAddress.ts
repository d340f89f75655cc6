import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";

/** The caller's network address (for the audit record), when the server knows it. */
export const AUDIT_ADDRESS = createContextKey<string>("", { description: "the caller's network address" });

/** Context values of an incoming request carrying its peer address: connectNodeAdapter's `contextValues`. */
export function auditAddressValues(req: { socket?: { remoteAddress?: string } | null }): ContextValues {
  const address = req.socket?.remoteAddress ?? "";
  // An IPv4 caller on a dual-stack socket, as people write it.
  return createContextValues().set(AUDIT_ADDRESS, address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address);
}
