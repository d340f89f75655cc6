import { createContextKey, type Interceptor } from "@connectrpc/connect";
import type { ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { toSmmfError } from "../errors/SmmfError.js";
import type { Authenticator } from "./Authenticator.js";
import { connectErrorOf } from "../errors/asConnectError.js";
import { rpcRole } from "./requiredRole.js";

/** The API key a call was made with (null when keys are not enforced), for the services' model checks. */
export const API_KEY = createContextKey<ApiKey | null>(null, { description: "the caller's API key" });

/** Checks every gRPC, gRPC-Web and Connect call's `authorization` (or `x-api-key`) metadata before it runs. */
export function authInterceptor(auth: Authenticator): Interceptor {
  return (next) => async (req) => {
    try {
      const role = rpcRole(req.service.typeName, req.method.name);
      if (role !== undefined) req.contextValues.set(API_KEY, auth.authorize((name) => req.header.get(name) ?? undefined, role));
    } catch (err) {
      throw connectErrorOf(toSmmfError(err));
    }
    return next(req);
  };
}
