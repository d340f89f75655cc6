import { OPEN_SERVICES } from "./requiredRole.js";
import { timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Interceptor } from "@connectrpc/connect";
import { connectErrorOf } from "../errors/asConnectError.js";
import { SmmfError } from "../errors/SmmfError.js";

/** The metadata that carries the cluster credential on calls between SMMF's own components. */
export const CLUSTER_HEADER = "smmf-cluster-credential";

/**
 * The cluster credential of this process: the shared secret every component (gateways, controllers, workers)
 * has, from the environment variable SMMF_CLUSTER_SECRET or the file `file` (--cluster-secret-file); none when
 * neither is set. At least 16 characters.
 */
export function readClusterSecret(file: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  let secret = env.SMMF_CLUSTER_SECRET;
  let from = "SMMF_CLUSTER_SECRET";
  if (!secret && file) {
    try {
      secret = readFileSync(file, "utf8").trim();
    } catch (err) {
      throw new SmmfError("invalid_argument", `cannot read the cluster secret file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    from = file;
  }
  if (secret === undefined || secret === "") return undefined;
  if (secret.length < 16) throw new SmmfError("invalid_argument", `the cluster secret (${from}) must be at least 16 characters`);
  return secret;
}

/** Headers that present the cluster credential (none without one). */
export function clusterHeaders(secret: string | undefined): Record<string, string> {
  return secret ? { [CLUSTER_HEADER]: secret } : {};
}

/** Adds the cluster credential to every call of a Connect client. */
export function presentClusterCredential(secret: string | undefined): Interceptor {
  return (next) => (req) => {
    if (secret) req.header.set(CLUSTER_HEADER, secret);
    return next(req);
  };
}

/**
 * Whether `given` (the call's smmf-cluster-credential metadata) is the cluster credential, compared in constant
 * time; the error a stranger gets when it is not.
 */
export function clusterCredentialRefusal(expected: Buffer, given: string | undefined): SmmfError | undefined {
  const presented = Buffer.from(given ?? "");
  if (presented.length === expected.length && timingSafeEqual(presented, expected)) return undefined;
  return new SmmfError("invalid_api_key", "this is an SMMF worker: only SMMF's own components, with the cluster credential, may call it");
}

/**
 * A worker's guard: every RPC must present the cluster credential (compared in constant time); strangers get
 * UNAUTHENTICATED before the call runs, so they can neither generate nor load, unload, drain or open a session.
 */
export function requireClusterCredential(secret: string): Interceptor {
  const expected = Buffer.from(secret);
  return (next) => (req) => {
    // Health checking is open (Kubernetes' probes carry no credential); it tells only whether the port serves.
    if (OPEN_SERVICES.has(req.service.typeName)) return next(req);
    const refused = clusterCredentialRefusal(expected, req.header.get(CLUSTER_HEADER) ?? undefined);
    if (refused) throw connectErrorOf(refused);
    return next(req);
  };
}
