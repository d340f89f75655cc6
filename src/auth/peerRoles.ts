import { OPEN_SERVICES } from "./requiredRole.js";
import type { PeerCertificate, TLSSocket } from "node:tls";
import type { Http2ServerRequest } from "node:http2";
import type { IncomingMessage } from "node:http";
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import { connectErrorOf } from "../errors/asConnectError.js";
import { SmmfError } from "../errors/SmmfError.js";

/** What an SMMF component's client certificate lets it do on a worker. */
export type PeerRole = "gateway" | "controller";

/** The certificate subject Organization (O) values that name each role; a certificate may carry several. */
export const ROLE_ORGANIZATIONS: Readonly<Record<string, PeerRole>> = { "smmf-gateway": "gateway", "smmf-controller": "controller" };

/**
 * Which roles may call each worker RPC (by method name). A controller places and operates instances: its
 * session, loads, unloads. A gateway generates and embeds; it also serves the operating API's instance
 * calls (state changes, placement checks), so those are open to it too, but never the controller's session
 * or loads. An RPC missing here is open to no certificate.
 */
export const WORKER_RPC_ROLES: Readonly<Record<string, readonly PeerRole[]>> = {
  // InferenceService
  Generate: ["gateway"],
  Embed: ["gateway"],
  CountTokens: ["gateway"],
  Rerank: ["gateway"],
  // WorkerService
  Session: ["controller"],
  LoadInstance: ["controller"],
  UnloadInstance: ["controller"],
  SetInstanceState: ["controller", "gateway"],
  EstimateInstance: ["controller", "gateway"],
  ListInstances: ["controller", "gateway"],
  Health: ["controller", "gateway"],
  // grpc.reflection: either role may read the API's shape. (grpc.health.v1.Health is open to every caller.)
  ServerReflectionInfo: ["controller", "gateway"],
};

/** The roles a peer certificate names (empty when it names none). */
export function rolesOfCertificate(cert: PeerCertificate | undefined): Set<PeerRole> {
  const roles = new Set<PeerRole>();
  const o = cert?.subject?.O as string | string[] | undefined;
  for (const name of o === undefined ? [] : Array.isArray(o) ? o : [o]) {
    const role = ROLE_ORGANIZATIONS[name];
    if (role) roles.add(role);
  }
  return roles;
}

/** The TLS connection a request came on (HTTP/1.1 or HTTP/2), when it came over TLS. */
function tlsSocketOf(req: IncomingMessage | Http2ServerRequest): TLSSocket | undefined {
  const socket = ("stream" in req ? req.stream.session?.socket : req.socket) as TLSSocket | undefined;
  return socket && typeof socket.getPeerCertificate === "function" ? socket : undefined;
}

/** The peer certificate's roles, as a context value of each call. */
export const PEER_ROLES = createContextKey<Set<PeerRole> | undefined>(undefined, { description: "roles of the peer's client certificate" });

/** The roles of the certificate a request's connection presented (undefined without TLS). */
export function peerRolesOf(req: IncomingMessage | Http2ServerRequest): Set<PeerRole> | undefined {
  const socket = tlsSocketOf(req);
  return socket ? rolesOfCertificate(socket.getPeerCertificate()) : undefined;
}

/** Whether a caller with these certificate roles may call the worker RPC `method`; the error it gets when not. */
export function peerRoleRefusal(method: string, roles: Set<PeerRole> | undefined): SmmfError | undefined {
  const allowed = WORKER_RPC_ROLES[method] ?? [];
  if (roles && allowed.some((role) => roles.has(role))) return undefined;
  const has = roles && roles.size > 0 ? `a certificate for ${[...roles].join(" and ")}` : "a certificate that names no SMMF role (subject O=smmf-gateway or O=smmf-controller)";
  return new SmmfError("permission_denied", `${method} on a worker needs the ${allowed.join(" or ") || "(no)"} role; the caller presented ${has}`);
}

/**
 * A worker's guard under mTLS: the TLS layer already refused peers without a certificate of the cluster's
 * CA; this refuses calls the certificate's role does not allow (PERMISSION_DENIED), before the call runs.
 */
export function requirePeerRole(): Interceptor {
  return (next) => (req) => {
    if (OPEN_SERVICES.has(req.service.typeName)) return next(req);
    const refused = peerRoleRefusal(req.method.name, req.contextValues.get(PEER_ROLES));
    if (refused) throw connectErrorOf(refused);
    return next(req);
  };
}
