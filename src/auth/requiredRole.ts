import { ApiKeyRole } from "../gen/smmf/v1/auth_pb.js";

/** ControllerService methods that only read. */
const READS = new Set(["ListModels", "GetModel", "ListModelInstances", "ListWorkers", "WatchEvents", "ListAudit"]);

/** The role an RPC needs: InferenceService calls need `inference`, ControllerService reads `reader`, the rest `admin`. */
export function rpcRole(service: string, method: string): ApiKeyRole {
  if (service === "smmf.v1.InferenceService") return ApiKeyRole.INFERENCE;
  if (service === "smmf.v1.ControllerService" && READS.has(method)) return ApiKeyRole.READER;
  return ApiKeyRole.ADMIN;
}

/**
 * The role a REST route needs; undefined for the open ones (/healthz, /readyz, and /metrics when
 * `metricsOpen`). The OpenAI API needs `inference` (feedback on a request too: applications give it);
 * reading /api/v1 needs `reader` (API keys, even to list, `admin`), changing anything there `admin`. Unknown routes need `inference`, so that a
 * caller without a key learns nothing of what exists.
 */
export function restRole(method: string, path: string, metricsOpen: boolean): ApiKeyRole | undefined {
  if (path === "/healthz" || path === "/readyz") return undefined;
  if (path === "/metrics") return metricsOpen ? undefined : ApiKeyRole.READER;
  if (path === "/api/v1/keys" || path.startsWith("/api/v1/keys/")) return ApiKeyRole.ADMIN;
  if (path.startsWith("/api/v1/")) {
    if (method === "GET" || method === "HEAD") return ApiKeyRole.READER;
    if (method === "POST" && /^\/api\/v1\/requests\/[^/]+\/feedback$/.test(path)) return ApiKeyRole.INFERENCE;
    return ApiKeyRole.ADMIN;
  }
  return ApiKeyRole.INFERENCE;
}
