import { fromJson, toBinary, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { CreateApiKeyRequestSchema, ListApiKeysRequestSchema, RevokeApiKeyRequestSchema, RotateApiKeyRequestSchema } from "../src/gen/smmf/v1/auth_pb.js";
import {
  GetModelRequestSchema,
  ListAuditRequestSchema,
  ListModelInstancesRequestSchema,
  ListModelsRequestSchema,
  ListWorkersRequestSchema,
  RestartModelRequestSchema,
  ScaleModelRequestSchema,
  SetModelInstanceStateRequestSchema,
  StartModelRequestSchema,
  StopModelRequestSchema,
  UpdateModelRequestSchema,
  WatchEventsRequestSchema,
} from "../src/gen/smmf/v1/controller_pb.js";
import { CountTokensRequestSchema, EmbedRequestSchema, GenerateRequestSchema } from "../src/gen/smmf/v1/inference_pb.js";
import { Prng } from "./prng.js";
import { breakJsonText, hostileString, hostileValue, mutateJson, nested, type Json } from "./values.js";

/**
 * The fuzz cases: deterministic from (seed, index), so any slice of a run can be replayed alone. Each case says
 * how it is sent and what answer is due; run.ts sends it and classifies what came back.
 */

/** Who a request claims to be: a real key of that role, a made-up one, a malformed header, or nobody. */
export type AuthAs = "none" | "admin" | "reader" | "inference" | "bogus" | "garbage";
export type Role = "open" | "inference" | "reader" | "admin";

export interface Expectation {
  /** An answer (an HTTP status, or a gRPC status) is due; false: the client gives up first, or the protocol may refuse. */
  answerDue: boolean;
  /** 5xx statuses the route documents (503 unavailable). */
  allowed5xx: readonly number[];
  /** The least role that may get a 2xx here (what the route needs once keys are on). */
  role: Role;
}

interface Base {
  index: number;
  category: string;
  /** One line: what the case sends (for the report and a reproduction). */
  label: string;
  expect: Expectation;
}

export interface HttpCase extends Base {
  kind: "http";
  transport: "h1" | "h2";
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  auth: AuthAs;
  authHeader: "authorization" | "x-api-key" | "api-key";
  /** "headers": the answer streams forever (events); stop after its status. */
  read: "full" | "headers";
}

export interface GrpcCase extends Base {
  kind: "grpc";
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  auth: AuthAs;
  /** end: the request ends normally; rst: the client resets its stream after sending; hold: the client never ends it, then closes its session. */
  end: "end" | "rst" | "hold";
}

/** Bytes on a raw TCP connection, written in steps (`{{KEY:role}}` stands for that role's key). */
export interface RawStep {
  data: Buffer;
  delayMs: number;
}

export interface Raw1Case extends Base {
  kind: "raw1";
  steps: RawStep[];
  /** HTTP responses due before the server may close. */
  responsesDue: number;
  /** After the last step: "wait" for the answers, "half-close" (FIN) then wait, or "close" at once (no answer due). */
  after: "wait" | "half-close" | "close";
}

export type H2Variant = "rapid-reset" | "reset-generations" | "half-closed-post" | "huge-headers" | "many-headers" | "over-stream-cap" | "client-goaway" | "destroy-mid-stream" | "raw-frames" | "continuation-flood" | "tiny-window";

export interface H2Case extends Base {
  kind: "h2";
  variant: H2Variant;
  n: number;
  /** Raw frames after the preface (raw-frames, continuation-flood). */
  frames?: Buffer;
}

export type FuzzCase = HttpCase | GrpcCase | Raw1Case | H2Case;

// ---------------------------------------------------------------------------------------------------------
// Shared pieces

const MODEL = "stories260K";
/** Names an admin-keyed change may never touch: the model every batch's check uses, and the fuzzer's own keys (admin, fuzz-reader, fuzz-inference). */
const PROTECTED = /stories260k|admin|fuzz-reader|fuzz-inference/i;

/** Whether a path names something protected in any (decoded) segment. */
function touchesProtected(path: string): boolean {
  return safeDecode(path.split("?")[0]).split("/").some((segment) => PROTECTED.test(segment));
}

const AUTHS: readonly (readonly [AuthAs, number])[] = [
  ["admin", 5],
  ["none", 2],
  ["reader", 1],
  ["inference", 2],
  ["bogus", 1],
  ["garbage", 1],
];

const ROLE_RANK: Record<Role, number> = { open: 0, inference: 1, reader: 2, admin: 3 };
const AUTH_RANK: Record<AuthAs, number> = { none: 0, bogus: 0, garbage: 0, inference: 1, reader: 2, admin: 3 };

/** Whether `auth` may be answered 2xx on a route needing `role`. */
export function mayPass(auth: AuthAs, role: Role): boolean {
  return role === "open" || AUTH_RANK[auth] >= ROLE_RANK[role];
}

const expectAnswer = (role: Role, allowed5xx: readonly number[] = [503]): Expectation => ({ answerDue: true, allowed5xx, role });

/** Replaces every protected name in a document an admin key sends with a change (so no case stops the test model or revokes a key). */
function guard(v: Json): Json {
  if (typeof v === "string") return PROTECTED.test(v) ? "fuzz-guarded" : v;
  if (Array.isArray(v)) return v.map(guard);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, guard(x)]));
  return v;
}

function percentEncodeSome(r: Prng, path: string): string {
  // Encodes a few letters of the path (%6b for k): the route must be the same decoded or not, and so its key check.
  return path.replace(/[a-z]/g, (c) => (r.bool(0.15) ? `%${c.charCodeAt(0).toString(16)}` : c));
}

const CONTENT_TYPES = [
  "application/json",
  "application/json",
  "application/json",
  "application/json; charset=utf-8",
  "APPLICATION/JSON",
  "application/vnd.api+json",
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/json; charset=utf-16",
  "application/jsonx",
  "",
  "application/proto",
  "application/connect+json",
  "application/grpc",
];

function randomHeaders(r: Prng, base: Record<string, string>): Record<string, string> {
  const h = { ...base };
  const n = r.weighted([[0, 6], [1, 3], [2, 1]] as const);
  for (let i = 0; i < n; i++) {
    switch (r.int(0, 11)) {
      case 0:
        h["content-encoding"] = r.pick(["gzip", "br", "deflate", "identity", "gzip, identity", "x-unknown", ""]);
        break;
      case 1:
        h["x-request-id"] = r.chars(r.pick([1, 64, 129, 4000]));
        break;
      case 2:
        h.origin = r.pick(["https://evil.example", "null", "http://127.0.0.1:1", "file://"]);
        break;
      case 3:
        h.accept = r.pick(["text/event-stream", "*/*", "application/xml", "", "a".repeat(3000)]);
        break;
      case 4:
        h["x-forwarded-for"] = r.pick(["1.2.3.4", "::1, 10.0.0.1", "x".repeat(2000)]);
        break;
      case 5:
        h.host = r.pick(["evil.example", "127.0.0.1.nip.io", "localhost", "[::1]", "127.0.0.1:1", "LOCALHOST", ""]);
        break;
      case 6:
        h["connect-timeout-ms"] = r.pick(["-1", "0", "abc", "99999999999", "1"]);
        break;
      case 7:
        h["x-" + r.chars(r.int(1, 20))] = r.chars(r.pick([0, 10, 8000]));
        break;
      case 8:
        h["user-agent"] = r.chars(r.pick([0, 1000]));
        break;
      case 9:
        h.cookie = `a=${r.chars(r.pick([5, 5000]))}`;
        break;
      case 10:
        h["content-type"] = r.pick(CONTENT_TYPES);
        break;
      default:
        h.traceparent = r.pick(["00-" + "0".repeat(32) + "-" + "0".repeat(16) + "-01", "garbage", "00-" + "f".repeat(32) + "-" + "f".repeat(16) + "-ff", "x".repeat(600)]);
    }
  }
  return h;
}

function authHeaderOf(r: Prng): HttpCase["authHeader"] {
  return r.weighted([["authorization", 8], ["x-api-key", 1], ["api-key", 1]] as const);
}

// ---------------------------------------------------------------------------------------------------------
// REST: the OpenAI API

const CHAT: Json = { model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 1 };
const COMPLETION: Json = { model: MODEL, prompt: "Once", max_tokens: 2 };
const EMBEDDING: Json = { model: MODEL, input: "a cat" };
const CHAT_FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream", "stream_options", "n", "logprobs", "top_logprobs", "tools", "tool_choice", "logit_bias", "response_format", "frequency_penalty", "presence_penalty", "user", "functions", "__proto__", "constructor"];
const COMPLETION_FIELDS = ["model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream", "stream_options", "n", "echo", "best_of", "suffix", "logprobs", "logit_bias", "__proto__"];
const EMBEDDING_FIELDS = ["model", "input", "encoding_format", "dimensions", "user", "__proto__"];

function chatMessages(r: Prng): Json {
  switch (r.int(0, 7)) {
    case 0:
      return Array.from({ length: r.pick([2048, 2049, 3000]) }, () => ({ role: "user", content: "" }));
    case 1:
      return [{ role: r.pick(["system", "developer", "assistant", "tool", "function", "", "USER", "user\u0000", "__proto__", "constructor"]), content: "Hi" }];
    case 2:
      return [{ role: "user", content: [{ type: r.pick(["text", "image_url", "input_audio", "", "TEXT"]), text: r.pick<Json>(["Hi", 5, null, ["x"]]) }] }];
    case 3:
      return [{ role: "user", content: "x".repeat(r.pick([1_048_577, 600_000])) }];
    case 4:
      return [{ role: "user" }, { content: "Hi" }, "user", null, [], 5];
    case 5:
      return [{ role: "user", content: "Hi", name: hostileString(r), tool_calls: [{}], extra: nested(r.int(3, 70)) }];
    case 6:
      return { role: "user", content: "Hi" };
    default:
      return [{ role: "user", content: hostileString(r) }];
  }
}

function stopValue(r: Prng): Json {
  return r.pick<Json>([
    "",
    "\n",
    "s".repeat(512),
    "s".repeat(513),
    ["a", "b", "c", "d"],
    ["a", "b", "c", "d", "e"],
    Array.from({ length: 17 }, (_, i) => String(i)),
    [["nested"]],
    [1, 2],
    [null],
    { a: "b" },
    7,
    true,
    [""],
    ["x".repeat(100_000)],
    nested(70),
  ]);
}

function inferenceBody(r: Prng, path: string): { body: Buffer; label: string } {
  const [template, fields] = path === "/v1/chat/completions" ? [CHAT, CHAT_FIELDS] : path === "/v1/completions" ? [COMPLETION, COMPLETION_FIELDS] : [EMBEDDING, EMBEDDING_FIELDS];
  let doc = JSON.parse(JSON.stringify(template)) as { [key: string]: Json };
  let label = "";
  const kind = r.weighted([["valid", 1], ["fields", 5], ["messages", path === "/v1/chat/completions" ? 2 : 0], ["stop", path === "/v1/embeddings" ? 0 : 1.5], ["input", path === "/v1/embeddings" ? 2 : 0], ["stream", path === "/v1/embeddings" ? 0 : 1], ["text", 2]] as const);
  switch (kind) {
    case "valid":
      label = "valid";
      if (path !== "/v1/embeddings") doc.max_tokens = r.int(1, 2);
      break;
    case "fields":
      doc = mutateJson(r, doc, fields, r.int(1, 4)) as { [key: string]: Json };
      label = "mutated fields";
      break;
    case "messages":
      doc.messages = chatMessages(r);
      label = "hostile messages";
      break;
    case "stop":
      doc.stop = stopValue(r);
      label = "hostile stop";
      break;
    case "input":
      doc.input = r.pick<Json>([[], [""], Array.from({ length: 2049 }, () => "a"), [1, 2, 3], [[1]], "x".repeat(r.pick([1_048_577, 300_000])), hostileValue(r), Array.from({ length: 40 }, () => "word ".repeat(20))]);
      label = "hostile input";
      break;
    case "stream":
      doc.stream = r.pick<Json>([true, true, "true", 1, null]);
      doc.stream_options = r.pick<Json>([{ include_usage: true }, { include_usage: "yes" }, [], "x", null, { include_usage: true, extra: nested(20) }]);
      doc.max_tokens = r.pick<Json>([1, 2, 2, 0, -1]);
      label = "stream";
      break;
    default: {
      label = "broken JSON text";
      return { body: breakJsonText(r, doc), label };
    }
  }
  // Inference bodies stay cheap: a valid one generates 1 or 2 tokens.
  if (typeof doc.max_tokens === "number" && doc.max_tokens > 2 && doc.max_tokens < 2 ** 32 && r.bool(0.9)) doc.max_tokens = 2;
  // No limit (absent or null) would generate up to the context's end: seconds per case.
  if (path !== "/v1/embeddings" && doc.max_tokens == null && doc.max_completion_tokens == null) doc.max_tokens = 1;
  return { body: Buffer.from(JSON.stringify(doc)), label };
}

function restInference(r: Prng, index: number): HttpCase {
  const path = r.pick(["/v1/chat/completions", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"]);
  const { body, label } = inferenceBody(r, path);
  const method = r.weighted([["POST", 20], ["GET", 1], ["PUT", 0.5], ["DELETE", 0.5], ["PATCH", 0.3], ["OPTIONS", 0.5], ["HEAD", 0.3]] as const);
  const headers = randomHeaders(r, { "content-type": r.weighted([["application/json", 12], ["x", 1]] as const) === "x" ? r.pick(CONTENT_TYPES) : "application/json" });
  const auth = r.weighted(AUTHS);
  return {
    kind: "http",
    index,
    category: "rest-inference",
    label: `${method} ${path} (${label}, ${body.length} B, auth ${auth})`,
    transport: r.bool(0.75) ? "h1" : "h2",
    method,
    path: r.bool(0.05) ? `${path}?${r.chars(r.int(0, 30), "abc=&%?/#")}` : path,
    headers: method === "GET" || method === "HEAD" ? omit(headers, "content-type") : headers,
    body: method === "GET" || method === "HEAD" ? undefined : body,
    auth,
    authHeader: authHeaderOf(r),
    read: "full",
    expect: expectAnswer("inference"),
  };
}

function omit(h: Record<string, string>, name: string): Record<string, string> {
  const copy = { ...h };
  delete copy[name];
  return copy;
}

// ---------------------------------------------------------------------------------------------------------
// REST: the operating API, the request log, metrics, health

const SPEC: Json = { name: "fuzz-model", engine: "llama.cpp", source: "missing-fuzz.gguf", replicas: 1 };
const SPEC_FIELDS = ["name", "engine", "source", "llamaCpp", "replicas", "placement", "labels", "weight", "proxy", "llama_cpp"];
const HOSTILE_SOURCES = ["/etc/passwd", "../../../../etc/shadow", "file:///proc/self/environ", "http://169.254.169.254/latest/meta-data/", "https://example.com/x.gguf", "missing-fuzz.gguf", "", "\u0000", "C:\\x.gguf", "//server/share/x.gguf", "gopher://127.0.0.1:1/", "file:///dev/zero"];

function specBody(r: Prng): Json {
  const spec = mutateJson(r, SPEC, SPEC_FIELDS, r.int(0, 3)) as { [key: string]: Json };
  if (r.bool(0.6)) spec.source = r.pick(HOSTILE_SOURCES);
  if (r.bool(0.2)) spec.engine = r.pick(["openai", "vllm", "azure", "ollama", "tgi", "llama-server", "openai-compatible", "nope", ""]);
  if (r.bool(0.2)) spec.proxy = { baseUrl: r.pick(["http://169.254.169.254/v1", "file:///etc/passwd", "http://127.0.0.1:1/v1", "gopher://x", "", "http://[::1]:1"]), apiKeyFile: r.pick(["/etc/shadow", "", "../../data/keys.json"]), apiKeyEnv: r.pick(["PATH", "SMMF_CLUSTER_SECRET", "", "HOME"]), headers: { authorization: "x", "x-evil": "\r\nInjected: 1" } };
  if (r.bool(0.15)) spec.llamaCpp = { contextSize: r.pick([0, 1, 4096, 2 ** 31, 2 ** 32 - 1]), sequences: r.pick([0, 1, 1000, 2 ** 32 - 1]), threads: r.pick([0, 1, 999999]), chatTemplate: hostileString(r) };
  return spec;
}

function pathName(r: Prng): string {
  return r.pick(["fuzz-model", "fuzz-none", "", "%ff", "%2e%2e", "..", "a%2Fb", "x".repeat(300), "%00", encodePath(hostileString(r).slice(0, 100)), MODEL]);
}

interface Route {
  method: string;
  path: string;
  role: Role;
  body?: () => Json;
  allowed5xx?: readonly number[];
  read?: "full" | "headers";
}

function operatingRoute(r: Prng): Route {
  const name = pathName(r);
  const id = r.pick(["inst-fuzz", "", "%ff", r.chars(40), "x".repeat(500)]);
  return r.weighted<Route>([
    [{ method: "GET", path: "/v1/models", role: "inference", allowed5xx: [] }, 2],
    [{ method: "GET", path: `/v1/models/${name}`, role: "inference", allowed5xx: [] }, 2],
    [{ method: "GET", path: "/healthz", role: "open", allowed5xx: [] }, 1],
    [{ method: "GET", path: "/readyz", role: "open" }, 1],
    [{ method: "GET", path: "/metrics", role: "open", allowed5xx: [] }, 0.5],
    [{ method: "GET", path: "/api/v1/models", role: "reader" }, 2],
    [{ method: "GET", path: `/api/v1/models/${name}`, role: "reader" }, 2],
    [{ method: "GET", path: "/api/v1/workers", role: "reader" }, 1],
    [{ method: "GET", path: "/api/v1/instances", role: "reader" }, 1],
    [{ method: "GET", path: `/api/v1/audit?${r.pick(["limit=5", "limit=0", "limit=1001", "limit=-1", "limit=abc", "before=%ff", "action=" + r.chars(300), "limit=99999999999999999999", "target=%00"])}`, role: "reader" }, 1.5],
    [{ method: "GET", path: "/api/v1/keys", role: "admin" }, 1.5],
    [{ method: "GET", path: "/api/v1/events", role: "reader", read: "headers" }, 0.3],
    [{ method: "POST", path: "/api/v1/models", role: "admin", body: () => specBody(r) }, 3],
    [{ method: "PUT", path: `/api/v1/models/${name}`, role: "admin", body: () => specBody(r) }, 2],
    [{ method: "DELETE", path: `/api/v1/models/${name}`, role: "admin" }, 1.5],
    [{ method: "POST", path: `/api/v1/models/${name}/restart`, role: "admin" }, 1],
    [{ method: "POST", path: `/api/v1/models/${name}/scale`, role: "admin", body: () => ({ replicas: hostileValue(r) }) }, 2],
    [{ method: "POST", path: `/api/v1/instances/${id}/${r.pick(["online", "offline", "drain", "nope", "__proto__", "constructor", "toString"])}`, role: "admin" }, 2],
    [{ method: "POST", path: "/api/v1/keys", role: "admin", body: () => mutateJson(r, { name: `fuzz-k-${r.chars(6)}`, role: "API_KEY_ROLE_INFERENCE" }, ["name", "role", "models", "rpm", "tpm", "expiresAt"], r.int(0, 3)) }, 2],
    [{ method: "POST", path: `/api/v1/keys/${r.pick(["fuzz-none", "", "%ff", "admin", "reader", x(r)])}/${r.pick(["revoke", "rotate", "nope"])}`, role: "admin" }, 1.5],
    [{ method: r.pick(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD"]), path: r.pick(["/", "/v1", "/v2/models", "/api", "/api/v1", "/api/v1/", "/api/v2/models", "/admin", "/.env", "/api/v1/models/a/b/c/d", "/v1/models/", "//v1/models", "/v1/chat/completions/", "/api/v1/keys/../models", "/API/V1/KEYS"]), role: "inference", allowed5xx: [503] }, 2],
  ]);
}

function x(r: Prng): string {
  return encodePath(hostileString(r).slice(0, 50));
}

/** encodeURIComponent that also takes lone surrogates (as the WTF-8 bytes a careless client would send). */
function encodePath(s: string): string {
  return s.replace(/[\ud800-\udfff]/g, "\u0000").split("\u0000").map((part) => encodeURIComponent(part)).join("%ED%A0%80");
}

function restOperating(r: Prng, index: number): HttpCase {
  const route = operatingRoute(r);
  const path = r.bool(0.1) ? percentEncodeSome(r, route.path) : route.path;
  let auth = r.weighted(AUTHS);
  const changes = route.method !== "GET" && route.method !== "HEAD";
  let body: Buffer | undefined;
  let label = "";
  if (route.body) {
    let doc = route.body();
    if (auth === "admin") doc = guard(doc);
    body = r.bool(0.15) ? breakJsonText(r, doc) : Buffer.from(JSON.stringify(doc));
    label = ` ${body.length} B`;
  } else if (changes && r.bool(0.3)) {
    body = breakJsonText(r, { a: 1 });
  }
  // An admin key never sends a change that names a protected model or key, even percent-encoded.
  if (auth === "admin" && changes && touchesProtected(path)) auth = "reader";
  const headers = randomHeaders(r, body ? { "content-type": "application/json" } : {});
  return {
    kind: "http",
    index,
    category: "rest-operating",
    label: `${route.method} ${path}${label} (auth ${auth})`,
    transport: r.bool(0.75) ? "h1" : "h2",
    method: route.method,
    path,
    headers,
    body,
    auth,
    authHeader: authHeaderOf(r),
    read: route.read ?? "full",
    expect: expectAnswer(roleOfPath(route.method, path, route.role), route.allowed5xx ?? [503]),
  };
}

/** The role a route needs, judged on the decoded path (what the handler routes on), not on the raw one. */
export function roleOfPath(method: string, path: string, fallback: Role): Role {
  const decoded = safeDecode(path.split("?")[0]);
  if (decoded === "/api/v1/keys" || decoded.startsWith("/api/v1/keys/")) return "admin";
  return fallback;
}

function safeDecode(path: string): string {
  try {
    return path
      .split("/")
      .map((s) => decodeURIComponent(s))
      .join("/");
  } catch {
    return path;
  }
}

function restRequestLog(r: Prng, index: number): HttpCase {
  const id = r.pick(["{{REQUEST_ID}}", "{{REQUEST_ID}}", "chatcmpl-none", "", "%ff", "x".repeat(400), encodePath("'; DROP TABLE requests; --"), "%00", "..%2F..%2Fkeys.json", "*", "%25", encodePath(hostileString(r).slice(0, 80))]);
  const feedback = r.bool(0.6);
  let body: Buffer | undefined;
  let path: string;
  let role: Role;
  let method: string;
  if (feedback) {
    method = r.weighted([["POST", 10], ["GET", 1], ["PUT", 0.5]] as const);
    path = `/api/v1/requests/${id}/feedback`;
    role = method === "POST" ? "inference" : "reader";
    const doc = mutateJson(r, { score: 1, comment: "good", label: "ok" }, ["score", "comment", "label", "__proto__"], r.int(0, 3));
    body = r.bool(0.2) ? breakJsonText(r, doc) : Buffer.from(JSON.stringify(doc));
  } else {
    method = r.weighted([["GET", 10], ["POST", 0.5], ["DELETE", 0.5]] as const);
    role = method === "GET" ? "reader" : "admin";
    const query = r.pick(["", "?limit=5", "?limit=0", "?limit=1000", "?limit=1001", "?limit=abc", "?status=200", "?status=2000", "?since=2020-01-01", "?since=abc", "?until=99999999999999999999", "?before=%ff", "?before=" + r.chars(200), "?model=" + encodePath(hostileString(r).slice(0, 200)), "?limit=5&limit=6", "?since=-1"]);
    path = r.bool(0.5) ? `/api/v1/requests${query}` : `/api/v1/requests/${id}`;
  }
  const auth = r.weighted(AUTHS);
  return {
    kind: "http",
    index,
    category: "rest-request-log",
    label: `${method} ${path}${body ? ` ${body.length} B` : ""} (auth ${auth})`,
    transport: r.bool(0.8) ? "h1" : "h2",
    method,
    path,
    headers: randomHeaders(r, body ? { "content-type": "application/json" } : {}),
    body,
    auth,
    authHeader: authHeaderOf(r),
    read: "full",
    expect: expectAnswer(role),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Connect and gRPC

interface Rpc {
  service: "smmf.v1.InferenceService" | "smmf.v1.ControllerService" | "smmf.v1.KeyService";
  method: string;
  schema: DescMessage;
  template: Json;
  fields: readonly string[];
  role: Role;
  streaming?: "bidi" | "server";
}

const RPCS: readonly Rpc[] = [
  { service: "smmf.v1.InferenceService", method: "CountTokens", schema: CountTokensRequestSchema, template: { model: MODEL, prompt: "Once upon a time" }, fields: ["model", "prompt", "chat", "instanceId"], role: "inference" },
  { service: "smmf.v1.InferenceService", method: "CountTokens", schema: CountTokensRequestSchema, template: { model: MODEL, chat: { messages: [{ role: "user", content: "Hi" }] } }, fields: ["model", "prompt", "chat", "instanceId"], role: "inference" },
  { service: "smmf.v1.InferenceService", method: "Embed", schema: EmbedRequestSchema, template: { model: MODEL, inputs: ["a cat"] }, fields: ["model", "inputs", "instanceId", "requestId"], role: "inference" },
  { service: "smmf.v1.InferenceService", method: "Generate", schema: GenerateRequestSchema, template: { start: { model: MODEL, prompt: "Once", params: { maxTokens: 1 } } }, fields: ["start", "cancel"], role: "inference", streaming: "bidi" },
  { service: "smmf.v1.InferenceService", method: "Generate", schema: GenerateRequestSchema, template: { start: { model: MODEL, chat: { messages: [{ role: "user", content: "Hi" }] }, params: { maxTokens: 2, stop: ["\n"] } } }, fields: ["start", "cancel"], role: "inference", streaming: "bidi" },
  { service: "smmf.v1.ControllerService", method: "ListModels", schema: ListModelsRequestSchema, template: {}, fields: ["x"], role: "reader" },
  { service: "smmf.v1.ControllerService", method: "GetModel", schema: GetModelRequestSchema, template: { name: MODEL }, fields: ["name"], role: "reader" },
  { service: "smmf.v1.ControllerService", method: "ListModelInstances", schema: ListModelInstancesRequestSchema, template: { model: MODEL }, fields: ["model"], role: "reader" },
  { service: "smmf.v1.ControllerService", method: "ListWorkers", schema: ListWorkersRequestSchema, template: {}, fields: ["x"], role: "reader" },
  { service: "smmf.v1.ControllerService", method: "ListAudit", schema: ListAuditRequestSchema, template: { limit: 5 }, fields: ["limit", "before", "action", "target"], role: "reader" },
  { service: "smmf.v1.ControllerService", method: "WatchEvents", schema: WatchEventsRequestSchema, template: { model: MODEL }, fields: ["model", "types"], role: "reader", streaming: "server" },
  { service: "smmf.v1.ControllerService", method: "StartModel", schema: StartModelRequestSchema, template: { spec: SPEC }, fields: ["spec"], role: "admin" },
  { service: "smmf.v1.ControllerService", method: "StopModel", schema: StopModelRequestSchema, template: { name: "fuzz-model" }, fields: ["name"], role: "admin" },
  { service: "smmf.v1.ControllerService", method: "RestartModel", schema: RestartModelRequestSchema, template: { name: "fuzz-model" }, fields: ["name"], role: "admin" },
  { service: "smmf.v1.ControllerService", method: "ScaleModel", schema: ScaleModelRequestSchema, template: { name: "fuzz-model", replicas: 2 }, fields: ["name", "replicas"], role: "admin" },
  { service: "smmf.v1.ControllerService", method: "UpdateModel", schema: UpdateModelRequestSchema, template: { spec: SPEC }, fields: ["spec"], role: "admin" },
  { service: "smmf.v1.ControllerService", method: "SetModelInstanceState", schema: SetModelInstanceStateRequestSchema, template: { instanceId: "inst-fuzz", state: "INSTANCE_STATE_OFFLINE" }, fields: ["instanceId", "state"], role: "admin" },
  { service: "smmf.v1.KeyService", method: "ListApiKeys", schema: ListApiKeysRequestSchema, template: {}, fields: ["x"], role: "admin" },
  { service: "smmf.v1.KeyService", method: "CreateApiKey", schema: CreateApiKeyRequestSchema, template: { name: "fuzz-k", role: "API_KEY_ROLE_INFERENCE" }, fields: ["name", "role", "models", "rpm", "tpm", "expiresAt"], role: "admin" },
  { service: "smmf.v1.KeyService", method: "RevokeApiKey", schema: RevokeApiKeyRequestSchema, template: { name: "fuzz-none" }, fields: ["name"], role: "admin" },
  { service: "smmf.v1.KeyService", method: "RotateApiKey", schema: RotateApiKeyRequestSchema, template: { name: "fuzz-none" }, fields: ["name"], role: "admin" },
];

/** A valid message's binary form, or bytes that are not one. */
function protoBytes(r: Prng, rpc: Rpc, doc: Json): Buffer {
  let bytes: Buffer;
  try {
    bytes = Buffer.from(toBinary(rpc.schema, fromJson(rpc.schema, doc as JsonValue, { ignoreUnknownFields: true })));
  } catch {
    bytes = r.bytes(r.int(0, 40));
  }
  switch (r.weighted([["as is", 4], ["flip", 2], ["truncate", 1], ["append", 2], ["random", 1]] as const)) {
    case "flip":
      if (bytes.length > 0) for (let i = 0; i < r.int(1, 3); i++) bytes[r.int(0, bytes.length - 1)] ^= 1 << r.int(0, 7);
      return bytes;
    case "truncate":
      return bytes.subarray(0, r.int(0, Math.max(0, bytes.length - 1)));
    case "append":
      // Unknown fields, a length-delimited field that claims more than there is, varints of 10+ bytes, group tags.
      return Buffer.concat([bytes, r.pick([Buffer.from([0xfa, 0x07, 0xff, 0xff, 0xff, 0xff, 0x0f]), Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Buffer.from([0x0b, 0x0c]), Buffer.from([0x0a, 0x80, 0x80, 0x80, 0x80, 0x10]), Buffer.from([0xf8, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]), r.bytes(r.int(1, 30))])]);
    case "random":
      return r.bytes(r.int(0, 200));
    default:
      return bytes;
  }
}

function rpcDoc(r: Prng, rpc: Rpc, auth: AuthAs): Json {
  let doc = r.bool(0.25) ? rpc.template : mutateJson(r, rpc.template, rpc.fields, r.int(1, 3));
  if (rpc.method === "StartModel" || rpc.method === "UpdateModel") doc = { spec: specBody(r) };
  if (rpc.streaming === "bidi" && r.bool(0.3)) {
    const start = (doc as { start?: { [k: string]: Json } }).start;
    if (start && typeof start === "object" && !Array.isArray(start)) {
      if (r.bool(0.5)) start.params = { maxTokens: r.pick([0, 1, 2]), stop: stopValue(r) };
      else if (start.chat && typeof start.chat === "object") (start.chat as { [k: string]: Json }).messages = chatMessages(r);
    }
  }
  if (auth === "admin" && rpc.role === "admin") doc = guard(doc);
  return doc;
}

/** A message in an envelope: flags (1 byte) and length (4 bytes, big-endian), as gRPC and Connect streaming frame it. */
export function envelope(payload: Buffer, flags = 0, declaredLength = payload.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([head, payload]);
}

function brokenEnvelope(r: Prng, payload: Buffer): { body: Buffer; label: string } {
  switch (r.weighted([["ok", 5], ["short", 1.5], ["long", 1.5], ["huge", 1], ["compressed", 1.5], ["flags", 1], ["two", 1], ["empty", 0.7], ["fragment", 0.7], ["oversized", 0.5]] as const)) {
    case "short":
      return { body: envelope(payload, 0, Math.max(0, payload.length - r.int(1, 4))), label: "length prefix too small" };
    case "long":
      return { body: envelope(payload, 0, payload.length + r.int(1, 1000)), label: "length prefix past the end" };
    case "huge":
      return { body: envelope(payload, 0, r.pick([0xffffffff, 0x7fffffff, 16 * 1024 * 1024 + 1, 1024 * 1024 + 1])), label: "huge length prefix" };
    case "compressed":
      return { body: envelope(payload, 1), label: "compressed flag set" };
    case "flags":
      return { body: envelope(payload, r.pick([0x02, 0x03, 0x80, 0xff, 0x04])), label: "odd flags" };
    case "two":
      return { body: Buffer.concat([envelope(payload), envelope(payload)]), label: "two messages" };
    case "empty":
      return { body: Buffer.alloc(0), label: "no message" };
    case "fragment":
      return { body: r.bytes(r.int(1, 4)), label: "less than a frame header" };
    case "oversized":
      return { body: envelope(Buffer.alloc(r.pick([1024 * 1024 + 16, 2 * 1024 * 1024]), 0x20)), label: "message over the size limit" };
    default:
      return { body: envelope(payload), label: "well framed" };
  }
}

function connectCase(r: Prng, index: number): HttpCase {
  const rpc = r.pick(RPCS);
  const auth = r.weighted(AUTHS);
  const doc = rpcDoc(r, rpc, auth);
  const binary = r.bool(0.4);
  let body: Buffer;
  let label: string;
  let contentType: string;
  const payload = binary ? protoBytes(r, rpc, doc) : r.bool(0.15) ? breakJsonText(r, doc) : Buffer.from(JSON.stringify(doc));
  if (rpc.streaming) {
    const framed = brokenEnvelope(r, payload);
    body = framed.body;
    label = framed.label;
    contentType = binary ? "application/connect+proto" : "application/connect+json";
  } else {
    body = payload;
    label = "unary";
    contentType = binary ? "application/proto" : "application/json";
  }
  if (r.bool(0.1)) contentType = r.pick(["text/plain", "application/grpc", "application/connect+json", "application/json", "application/proto", "application/grpc-web+proto", ""]);
  const headers: Record<string, string> = { "content-type": contentType };
  if (r.bool(0.8)) headers["connect-protocol-version"] = r.weighted([["1", 10], ["2", 1], ["", 1], ["x", 1]] as const);
  if (r.bool(0.1)) headers["connect-timeout-ms"] = r.pick(["-1", "0", "1", "abc", "99999999999", "1".repeat(30)]);
  if (r.bool(0.05)) headers["connect-content-encoding"] = r.pick(["gzip", "br", "identity"]);
  if (r.bool(0.05)) headers["connect-accept-encoding"] = r.pick(["gzip", "zstd", "x".repeat(1000)]);
  let path = `/${rpc.service}/${rpc.method}`;
  if (r.bool(0.05)) path = r.pick([`/${rpc.service}/Nope`, "/smmf.v1.Nope/Call", `/${rpc.service}/${rpc.method}/`, `/${rpc.service.toLowerCase()}/${rpc.method}`, `/smmf.v1.WorkerService/LoadInstance`, `/smmf.v1.WorkerService/Session`, "/grpc.health.v1.Health/Check", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"]);
  const method = r.weighted([["POST", 20], ["GET", 1], ["PUT", 0.3]] as const);
  const h1 = r.bool(0.5);
  return {
    kind: "http",
    index,
    category: binary ? "connect-proto" : "connect-json",
    label: `Connect ${method} ${path} ${contentType} (${label}, ${body.length} B, auth ${auth}, ${h1 ? "HTTP/1.1" : "h2"})`,
    transport: h1 ? "h1" : "h2",
    method,
    path: method === "GET" ? `${path}?encoding=json&message=${encodePath(body.toString("utf8").slice(0, 2000))}` : path,
    headers: method === "GET" ? omit(headers, "content-type") : headers,
    body: method === "GET" ? undefined : body,
    auth,
    authHeader: authHeaderOf(r),
    read: rpc.streaming === "server" ? "headers" : "full",
    // Bidirectional streams over HTTP/1.1 are refused with 505 (Connect's protocol says so).
    expect: expectAnswer(rpc.role, h1 && rpc.streaming === "bidi" ? [503, 505] : [503]),
  };
}

function grpcCase(r: Prng, index: number): GrpcCase {
  const rpc = r.pick(RPCS);
  const auth = r.weighted(AUTHS);
  const doc = rpcDoc(r, rpc, auth);
  const framed = brokenEnvelope(r, protoBytes(r, rpc, doc));
  const headers: Record<string, string> = { "content-type": r.weighted([["application/grpc", 8], ["application/grpc+proto", 2], ["application/grpc+json", 1], ["application/grpc-web+proto", 1], ["application/grpc-web-text", 0.5], ["application/grpc+nope", 0.5]] as const), te: "trailers" };
  if (r.bool(0.2)) headers["grpc-encoding"] = r.pick(["gzip", "identity", "snappy", "deflate", ""]);
  if (r.bool(0.1)) headers["grpc-timeout"] = r.pick(["1n", "1m", "99999999H", "abc", "-1S", "100000000S", "0m"]);
  if (r.bool(0.05)) headers["grpc-accept-encoding"] = r.pick(["gzip", "x".repeat(2000)]);
  if (r.bool(0.05)) delete headers.te;
  const end = r.weighted([["end", 12], ["rst", 1], ["hold", 1]] as const);
  let body = framed.body;
  if (headers["content-type"] === "application/grpc-web-text" && r.bool(0.5)) body = Buffer.from(body.toString("base64"));
  const path = r.bool(0.05) ? r.pick([`/${rpc.service}/Nope`, "/smmf.v1.WorkerService/LoadInstance", "/", "/v1/chat/completions"]) : `/${rpc.service}/${rpc.method}`;
  return {
    kind: "grpc",
    index,
    category: "grpc-frames",
    label: `gRPC ${path} ${headers["content-type"]} (${framed.label}, ${body.length} B, auth ${auth}, ${end}${headers["grpc-encoding"] !== undefined ? `, grpc-encoding ${headers["grpc-encoding"]}` : ""})`,
    path,
    headers,
    body,
    auth,
    end,
    expect: { answerDue: end === "end", allowed5xx: [503], role: rpc.role },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Raw HTTP/1.1

const CRLF = "\r\n";

function rawRequest(method: string, path: string, headers: [string, string][], body = ""): string {
  return `${method} ${path} HTTP/1.1${CRLF}${headers.map(([k, v]) => `${k}: ${v}`).join(CRLF)}${headers.length ? CRLF : ""}${CRLF}${body}`;
}

const HOST: [string, string] = ["Host", "127.0.0.1"];
const CHAT_TEXT = JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 1 });

function split(r: Prng, text: string | Buffer, pieces: number, maxDelay: number): RawStep[] {
  const data = Buffer.isBuffer(text) ? text : Buffer.from(text, "latin1");
  const cuts = Array.from({ length: pieces - 1 }, () => r.int(1, Math.max(1, data.length - 1))).sort((a, b) => a - b);
  const steps: RawStep[] = [];
  let at = 0;
  for (const cut of [...cuts, data.length]) {
    if (cut > at) steps.push({ data: data.subarray(at, cut), delayMs: r.int(0, maxDelay) });
    at = cut;
  }
  return steps;
}

function raw1Case(r: Prng, index: number): Raw1Case {
  const one = (label: string, text: string | Buffer, responsesDue = 1, after: Raw1Case["after"] = "wait"): Raw1Case => ({
    kind: "raw1",
    index,
    category: "raw-http1",
    label,
    steps: [{ data: Buffer.isBuffer(text) ? text : Buffer.from(text, "latin1"), delayMs: 0 }],
    responsesDue,
    after,
    expect: { answerDue: responsesDue > 0, allowed5xx: [503], role: "open" },
  });
  const variant = r.int(0, 29);
  switch (variant) {
    case 0:
      return one("garbage request line", `${r.chars(r.int(1, 60), "ABC /\t%\u0001\u00ff")}${CRLF}${CRLF}`);
    case 1:
      return one("URL of 64 KiB", rawRequest("GET", `/v1/models?${"a".repeat(65536)}`, [HOST]));
    case 2:
      return one("one header of 20 KiB", rawRequest("GET", "/healthz", [HOST, ["X-Big", "b".repeat(20_000)]]));
    case 3:
      return one("3000 headers", rawRequest("GET", "/healthz", [HOST, ...Array.from({ length: 3000 }, (_, i): [string, string] => [`X-H${i}`, "v"])]));
    case 4:
      return one("NUL and CR in a header value", `GET /healthz HTTP/1.1${CRLF}Host: 127.0.0.1${CRLF}X-Bad: a\u0000b\rc${CRLF}${CRLF}`);
    case 5:
      return one("invalid header name", `GET /healthz HTTP/1.1${CRLF}Host: 127.0.0.1${CRLF}X Bad(): v${CRLF}${CRLF}`);
    case 6:
      return one("Content-Length and Transfer-Encoding together (smuggling)", rawRequest("POST", "/v1/chat/completions", [HOST, ["Content-Type", "application/json"], ["Content-Length", "4"], ["Transfer-Encoding", "chunked"]], `0${CRLF}${CRLF}GET /healthz HTTP/1.1${CRLF}Host: 127.0.0.1${CRLF}${CRLF}`));
    case 7:
      return one("two different Content-Lengths", rawRequest("POST", "/v1/completions", [HOST, ["Content-Type", "application/json"], ["Content-Length", "2"], ["Content-Length", "3"]], "{}x"));
    case 8:
      return one("bad chunk size", rawRequest("POST", "/v1/completions", [HOST, ["Content-Type", "application/json"], ["Transfer-Encoding", "chunked"]], `zz${CRLF}{}${CRLF}0${CRLF}${CRLF}`));
    case 9:
      return one("chunked body, a valid chat request, with {{KEY:admin}}", rawRequest("POST", "/v1/chat/completions", [HOST, ["Authorization", "Bearer {{KEY:admin}}"], ["Content-Type", "application/json"], ["Transfer-Encoding", "chunked"]], `${CHAT_TEXT.length.toString(16)}${CRLF}${CHAT_TEXT}${CRLF}0${CRLF}${CRLF}`));
    case 10: {
      const text = rawRequest("GET", "/healthz", [HOST]);
      return { ...one("slow headers (a valid GET in pieces)", text), steps: split(r, text, r.int(3, 8), 40) };
    }
    case 11: {
      const text = rawRequest("POST", "/v1/chat/completions", [HOST, ["Authorization", "Bearer {{KEY:admin}}"], ["Content-Type", "application/json"], ["Content-Length", "{{LEN}}"]], CHAT_TEXT);
      return { ...one("slow body (a valid chat request in pieces)", text), steps: split(r, text.replace("{{LEN}}", String(CHAT_TEXT.length)), r.int(3, 10), 40) };
    }
    case 12: {
      const n = r.int(2, 6);
      return one(`${n} pipelined requests`, rawRequest("GET", "/healthz", [HOST]).repeat(n), n);
    }
    case 13:
      return one("HTTP/1.0 without Host", `GET /healthz HTTP/1.0${CRLF}${CRLF}`);
    case 14:
      return one("HTTP/1.1 without Host", `GET /healthz HTTP/1.1${CRLF}${CRLF}`);
    case 15:
      return one("Host that is not loopback", rawRequest("GET", "/v1/models", [["Host", r.pick(["evil.example", "127.0.0.1.evil.example", "localhost.", "0x7f.1", "[::ffff:127.0.0.1]"])]]));
    case 16:
      return one("absolute-form URI", rawRequest("GET", r.pick(["http://evil.example/api/v1/keys", "http://127.0.0.1/api/v1/keys", "*", "healthz", "/healthz#frag"]), [HOST]));
    case 17: {
      const method = r.pick(["FOO", "get", "G E T", "CONNECT", "PRI", "M".repeat(2000), "TRACE"]);
      return one(`odd method ${method.slice(0, 20)}`, rawRequest(method, method === "CONNECT" ? "127.0.0.1:80" : "/healthz", [HOST]));
    }
    case 18:
      return one("Expect: 100-continue", rawRequest("POST", "/v1/completions", [HOST, ["Content-Type", "application/json"], ["Expect", "100-continue"], ["Content-Length", "2"]], "{}"));
    case 19:
      return one("Upgrade: websocket", rawRequest("GET", "/healthz", [HOST, ["Connection", "Upgrade"], ["Upgrade", "websocket"], ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="], ["Sec-WebSocket-Version", "13"]]));
    case 20:
      return one("Upgrade: h2c", rawRequest("GET", "/healthz", [HOST, ["Connection", "Upgrade, HTTP2-Settings"], ["Upgrade", "h2c"], ["HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"]]));
    case 21:
      // The valid request's answer is due; the garbage may get a 400 or just the connection closed.
      return one("a valid request, then garbage on the same connection", Buffer.concat([Buffer.from(rawRequest("GET", "/healthz", [HOST])), r.bytes(r.int(5, 100)), Buffer.from(CRLF + CRLF)]), 1);
    case 22:
      return one("a request, then half-close (FIN) before the answer", rawRequest("GET", "/healthz", [HOST]), 1, "half-close");
    case 23:
      return one("partial headers, then the client closes", `GET /healthz HTTP/1.1${CRLF}Host: 127.0.0.1${CRLF}X-Slow: `, 0, "close");
    case 24:
      return one("Content-Length larger than the body, then the client closes", rawRequest("POST", "/v1/completions", [HOST, ["Content-Type", "application/json"], ["Content-Length", "1000"]], "{}"), 0, "close");
    case 25:
      return one("TLS ClientHello on the cleartext port", Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]), r.bytes(160)]));
    case 26:
      return one("chunked body over the body limit (2 MiB)", Buffer.concat([Buffer.from(rawRequest("POST", "/v1/completions", [HOST, ["Content-Type", "application/json"], ["Transfer-Encoding", "chunked"]])), ...Array.from({ length: 32 }, () => Buffer.from(`10000${CRLF}${"a".repeat(65536)}${CRLF}`)), Buffer.from(`0${CRLF}${CRLF}`)]));
    case 27:
      return one("negative or non-numeric Content-Length", rawRequest("POST", "/v1/completions", [HOST, ["Content-Type", "application/json"], ["Content-Length", r.pick(["-1", "abc", "1e3", "99999999999999999999", " 2", "0x2"])]], "{}"));
    case 28:
      return one("obsolete line folding", `GET /healthz HTTP/1.1${CRLF}Host: 127.0.0.1${CRLF}X-Fold: a${CRLF} b${CRLF}${CRLF}`);
    default:
      return one("bare LF line endings", "GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n");
  }
}

// ---------------------------------------------------------------------------------------------------------
// HTTP/2

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

function rawFrames(r: Prng): { frames: Buffer; label: string } {
  const settings = frame(0x4, 0, 0, Buffer.alloc(0));
  switch (r.int(0, 9)) {
    case 8: {
      const n = r.pick([100, 1000, 10_000]);
      return { frames: Buffer.concat(Array.from({ length: n }, () => frame(0x4, 0, 0, Buffer.from([0x00, 0x01, 0x00, 0x00, 0x10, 0x00])))), label: `SETTINGS flood (${n}, ACKs never read)` };
    }
    case 9: {
      const n = r.pick([100, 1000, 10_000]);
      return { frames: Buffer.concat([settings, ...Array.from({ length: n }, (_, i) => frame(0x6, 0, 0, Buffer.from(i.toString(16).padStart(16, "0"), "hex")))]), label: `PING flood (${n}, ACKs never read)` };
    }
    case 0:
      return { frames: r.bytes(r.int(1, 200)), label: "garbage after the preface" };
    case 1:
      return { frames: Buffer.concat([settings, frame(0x1, 0x5, 1, r.bytes(r.int(1, 60)))]), label: "HEADERS with a garbage header block" };
    case 2:
      return { frames: Buffer.concat([settings, frame(0x0, 0x1, 0, Buffer.from("data"))]), label: "DATA on stream 0" };
    case 3:
      return { frames: Buffer.concat([settings, frame(0x8, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff])), frame(0x8, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff]))]), label: "WINDOW_UPDATE overflow" };
    case 4:
      return { frames: Buffer.concat([settings, frame(0x4, 0, 0, Buffer.from([0x00, 0x04, 0xff, 0xff, 0xff, 0xff]))]), label: "SETTINGS with an initial window over 2^31-1" };
    case 5:
      return { frames: Buffer.concat([settings, frame(0x4, 0, 0, Buffer.from([0x00, 0x05, 0x00, 0x00, 0x00, 0x01]))]), label: "SETTINGS with a max frame size below the minimum" };
    case 6:
      return { frames: Buffer.concat([settings, frame(0x6, 0, 1, Buffer.alloc(8))]), label: "PING on a stream" };
    default:
      return { frames: Buffer.concat([settings, frame(0x1, 0x4, 2, Buffer.from([0x82]))]), label: "HEADERS on an even (server) stream id" };
  }
}

function continuationFlood(r: Prng): Buffer {
  // HEADERS without END_HEADERS, then CONTINUATION frames that never end (CVE-2024-27316's shape): the server must not buffer them without bound.
  const parts = [frame(0x4, 0, 0, Buffer.alloc(0)), frame(0x1, 0x4 ^ 0x4, 1, Buffer.from([0x82, 0x86, 0x84]))];
  const n = r.pick([200, 1000, 3000]);
  for (let i = 0; i < n; i++) parts.push(frame(0x9, 0, 1, Buffer.concat([Buffer.from([0x40, 0x05]), Buffer.from("x-aaa"), Buffer.from([0x7f, 0x81, 0x1f]), Buffer.alloc(200, 0x61)])));
  return Buffer.concat(parts);
}

function h2Case(r: Prng, index: number): H2Case {
  const variant = r.weighted<H2Variant>([
    ["rapid-reset", 2],
    ["reset-generations", 1.5],
    ["half-closed-post", 2],
    ["huge-headers", 1],
    ["many-headers", 1],
    ["over-stream-cap", 0.7],
    ["client-goaway", 1],
    ["destroy-mid-stream", 1],
    ["raw-frames", 2],
    ["continuation-flood", 0.6],
    ["tiny-window", 1],
  ]);
  const n = variant === "rapid-reset" ? r.pick([50, 200, 1000]) : variant === "reset-generations" ? r.int(4, 24) : variant === "over-stream-cap" ? r.int(257, 400) : variant === "huge-headers" ? r.pick([17_000, 70_000, 200_000]) : variant === "many-headers" ? r.pick([200, 1000, 4000]) : r.int(1, 4);
  let frames: Buffer | undefined;
  let label: string = variant;
  if (variant === "raw-frames") {
    const raw = rawFrames(r);
    frames = raw.frames;
    label = `raw frames: ${raw.label}`;
  } else if (variant === "continuation-flood") {
    frames = continuationFlood(r);
    label = "CONTINUATION flood";
  }
  // Answers are due on the streams the server accepted, except where the client itself gives up.
  const answerDue = variant === "half-closed-post" || variant === "tiny-window" || variant === "many-headers" || variant === "over-stream-cap";
  return { kind: "h2", index, category: "http2", label: `${label} (n=${n})`, variant, n, frames, expect: { answerDue, allowed5xx: [503], role: "open" } };
}

// ---------------------------------------------------------------------------------------------------------

/** A body of 12 MB on an inference route: a 413 is due (read before the connection closes). */
function bigBody(r: Prng, index: number): HttpCase {
  const path = r.pick(["/v1/chat/completions", "/v1/embeddings", "/smmf.v1.InferenceService/CountTokens"]);
  return {
    kind: "http",
    index,
    category: "oversized-body",
    label: `POST ${path} with a 12 MB body`,
    transport: r.bool(0.5) ? "h1" : "h2",
    method: "POST",
    path,
    headers: { "content-type": "application/json" },
    body: Buffer.alloc(12 * 1024 * 1024, 0x20),
    auth: "admin",
    authHeader: "authorization",
    read: "full",
    expect: expectAnswer("inference"),
  };
}

/** Every category a case may have (a run also reports "server": crash, health, RSS). */
export const CATEGORY_NAMES = ["rest-inference", "rest-operating", "rest-request-log", "connect-json", "connect-proto", "grpc-frames", "raw-http1", "http2", "oversized-body"] as const;

const CATEGORIES: readonly (readonly [(r: Prng, index: number) => FuzzCase, number])[] = [
  [restInference, 30],
  [restOperating, 20],
  [restRequestLog, 6],
  [connectCase, 17],
  [grpcCase, 12],
  [raw1Case, 9],
  [h2Case, 5.9],
  [bigBody, 0.1],
];

/** The case at `index` of the run with `seed`: the same on every call. */
export function makeCase(seed: number, index: number): FuzzCase {
  const r = new Prng((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca77)) >>> 0);
  return r.weighted(CATEGORIES)(r, index);
}

/** Cases [from, from + count) of the run with `seed`. */
export function makeCases(seed: number, from: number, count: number): FuzzCase[] {
  return Array.from({ length: count }, (_, i) => makeCase(seed, from + i));
}
