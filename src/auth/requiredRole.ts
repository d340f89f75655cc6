import { decodeSegment } from "../net/decodeSegment.js";
import { ApiKeyRole } from "../gen/smmf/v1/auth_pb.js";

/** ControllerService methods that only read. */
const READS = new Set(["ListModels", "GetModel", "ListModelInstances", "ListWorkers", "WatchEvents", "ListAudit"]);

/** Services whose calls need no key: health checking (as /healthz and /readyz; Kubernetes' gRPC probes send none). */
export const OPEN_SERVICES = new Set(["grpc.health.v1.Health"]);

/**
 * The role an RPC needs: InferenceService calls need `inference`, ControllerService reads and server reflection
 * `reader`, the rest `admin`; health checking none (undefined).
 */
export function rpcRole(service: string, method: string): ApiKeyRole | undefined {
  if (OPEN_SERVICES.has(service)) return undefined;
  if (service === "grpc.reflection.v1.ServerReflection" || service === "grpc.reflection.v1alpha.ServerReflection") return ApiKeyRole.READER;
  if (service === "smmf.v1.InferenceService") return ApiKeyRole.INFERENCE;
  if (service === "smmf.v1.ControllerService" && READS.has(method)) return ApiKeyRole.READER;
  return ApiKeyRole.ADMIN;
}

/**
 * The role a REST route needs; undefined for the open ones (/healthz, /readyz, and /metrics when
 * `metricsOpen`). The OpenAI API needs `inference` (feedback on a request too: applications give it);
 * reading /api/v1 needs `reader` (API keys, even to list, `admin`), changing anything there `admin`. Unknown routes need `inference`, so that a
 * caller without a key learns nothing of what exists. The path is judged as the routes read it, segment by
 * segment percent-decoded (`/api/v1/ke%79s` is `/api/v1/keys`); malformed percent-encoding is a 400.
 */
export function restRole(method: string, rawPath: string, metricsOpen: boolean): ApiKeyRole | undefined {
  const path = rawPath.includes("%") ? rawPath.split("/").map(decodeSegment).join("/") : rawPath;
  if (path === "/healthz" || path === "/readyz") return undefined;
  // The web console's static files: no data in them (its pages call the API with the key signed in with).
  if (path === "/ui" || path.startsWith("/ui/")) return undefined;
  if (path === "/metrics") return metricsOpen ? undefined : ApiKeyRole.READER;
  const segments = path.split("/");
  if (segments[1] === "api" && segments[2] === "v1") {
    if (segments[3] === "keys") return ApiKeyRole.ADMIN;
    if (method === "GET" || method === "HEAD") return ApiKeyRole.READER;
    if (method === "POST" && segments.length === 6 && segments[3] === "requests" && segments[5] === "feedback") return ApiKeyRole.INFERENCE;
    return ApiKeyRole.ADMIN;
  }
  return ApiKeyRole.INFERENCE;
}
