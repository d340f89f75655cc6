import type { IncomingMessage } from "node:http";
import { Http2ServerResponse, type Http2ServerRequest } from "node:http2";
import type { ConnectRouter, ContextValues, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Authenticator } from "../auth/Authenticator.js";
import { authInterceptor } from "../auth/authInterceptor.js";
import { requireClusterCredential } from "../auth/clusterCredential.js";
import { restRole } from "../auth/requiredRole.js";
import { dialectOf, errorAnswer } from "../errors/errorDialect.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import { ApiKeyRole, type ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { guardHost } from "./guardHost.js";
import { drainBody } from "./drainBody.js";
import { parseErrorsAsInvalid } from "./parseErrorsAsInvalid.js";
import { listenHttp, type HttpHandler, type HttpListener, type ListenOptions, type ListenTls } from "./listenHttp.js";
import { PEER_ROLES, peerRolesOf, requirePeerRole } from "../auth/peerRoles.js";
import { createContextValues } from "@connectrpc/connect";
import { isLoopbackHost } from "./loopbackHost.js";
import { sendJson, type AnyResponse } from "./sse.js";
import { withCors } from "./withCors.js";
import { createGrpcGenerateHandler } from "../worker/serveGrpcGenerate.js";
import { grpcMessage } from "./grpcFrames.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { createHealthService } from "./grpcHealth.js";
import { createReflectionServices } from "./grpcReflection.js";
import type { WorkerInference } from "../worker/createWorkerInferenceService.js";

export type Req = IncomingMessage | Http2ServerRequest;

/** A role's REST routes: called after the key check, with the caller's key (null when keys are not enforced). */
export type RestHandler = (req: Req, res: AnyResponse, key: ApiKey | null) => void;

export interface ServerOptions {
  host: string;
  port: number;
  /** The role's gRPC, gRPC-Web and Connect services. */
  routes(router: ConnectRouter): void;
  /** The role's REST routes (and everything that is not an RPC). */
  rest: RestHandler;
  /** API keys, checked on every REST route (restRole) and RPC (rpcRole); none: all open. */
  auth?: Authenticator;
  /** Every RPC must present this cluster credential (workers); none: RPCs are not asked for it. */
  clusterSecret?: string;
  /** Web origins allowed to call from a browser (CORS); none by default. */
  corsOrigins?: readonly string[];
  /** Per-call context values (the caller's address for the audit record). */
  contextValues?: (req: Req) => ContextValues;
  /** Largest RPC request message, in bytes (Connect and gRPC; compressed requests are not accepted); default 16 MiB. */
  readMaxBytes?: number;
  /** Listener limits: header, request and idle timeouts, connections, HTTP/2 streams per connection. */
  limits?: ListenerLimits;
  /** Serve HTTPS; with `requireClientCertificate` (workers), mTLS: each RPC must be allowed to the certificate's role. */
  tls?: ListenTls;
  /**
   * Workers: InferenceService's Generate over gRPC is served by createGrpcGenerateHandler (the gateway's hot
   * path, without Connect's per-call machinery), with the same checks; everything else by Connect.
   */
  grpcGenerate?: WorkerInference;
  /**
   * Whether the port serves (what its /readyz says), for grpc.health.v1.Health: SERVING or NOT_SERVING, for the
   * server ("") and each of its services. Default: serving while it listens.
   */
  serving?: () => boolean;
}

/** The listener limits of ListenOptions. */
export type ListenerLimits = Omit<ListenOptions, "tls">;

const COMPRESSED = new SmmfError("unsupported_media_type", "Compressed request bodies are not accepted: send the body as it is (no Content-Encoding)").toOpenAiBody();

/**
 * Once an answer is out, the rest of a request body nobody read (an RPC refused past its read limit, a stream
 * answered early) is read and thrown away (drainBody): on HTTP/2 an unread body would stall the client on flow
 * control, so it could neither finish nor see the answer end. One shared function: nothing made per request.
 */
function drainUnread(this: AnyResponse): void {
  drainBody(this.req);
}

// HTTP/2 answers that would start before their request body has all arrived (a 413 or 429 for a body over the
// limit): Node resets such a stream (ENHANCE_YOUR_CALM) when response headers go out while much of the body is
// still coming, and the client never sees the answer. So such an answer is held: the rest of the body is read
// and thrown away (drainBody, up to its bound), then the answer goes out whole. Not for gRPC or Connect
// streaming calls, whose streams may stay open both ways. The three methods are shared functions set on the response: nothing made per request.
const H2 = Http2ServerResponse.prototype;
const HELD = Symbol("smmf.heldAnswer");
interface Held {
  head?: unknown[];
  chunks: unknown[][];
  ended?: unknown[];
}
type HoldingResponse = Http2ServerResponse & { [HELD]?: Held };

function bodyPending(res: Http2ServerResponse): boolean {
  const stream = res.stream;
  return !stream.endAfterHeaders && !stream.readableEnded && !stream.destroyed && !stream.closed;
}

function release(this: HoldingResponse): void {
  const held = this[HELD]!;
  // Back to the plain methods (Node's own end() calls writeHead()), then the answer as it was given.
  Reflect.deleteProperty(this, "writeHead");
  Reflect.deleteProperty(this, "write");
  Reflect.deleteProperty(this, "end");
  if (held.head) this.writeHead(...(held.head as Parameters<typeof H2.writeHead>));
  for (const chunk of held.chunks) this.write(...(chunk as [string]));
  if (held.ended) this.end(...(held.ended as [string]));
}

function hold(res: HoldingResponse): Held {
  let held = res[HELD];
  if (held) return held;
  held = { chunks: [] };
  res[HELD] = held;
  drainBody(res.req);
  const go = () => {
    res.stream.off("end", go);
    res.stream.off("close", go);
    release.call(res);
  };
  res.stream.once("end", go);
  res.stream.once("close", go);
  return held;
}

function heldWriteHead(this: HoldingResponse, ...args: unknown[]): Http2ServerResponse {
  if (!this[HELD] && !bodyPending(this)) return H2.writeHead.apply(this, args as Parameters<typeof H2.writeHead>);
  hold(this).head = args;
  return this;
}

function heldWrite(this: HoldingResponse, ...args: unknown[]): boolean {
  if (!this[HELD]) return H2.write.apply(this, args as Parameters<typeof H2.write>);
  // Held: taken at once (a writer waiting for its callback goes on to end()).
  const callback = args.findLast((a) => typeof a === "function") as ((err?: Error) => void) | undefined;
  this[HELD].chunks.push(args.filter((a) => typeof a !== "function"));
  if (callback) process.nextTick(callback);
  return true;
}

function heldEnd(this: HoldingResponse, ...args: unknown[]): Http2ServerResponse {
  if (!this[HELD] && (this.headersSent || !bodyPending(this))) return H2.end.apply(this, args as Parameters<typeof H2.end>);
  hold(this).ended = args;
  return this;
}

/** gRPC, gRPC-Web and Connect streaming calls: their request and answer streams may both stay open, so no answer is held. */
function isStreamingRpc(contentType: string | undefined): boolean {
  return contentType !== undefined && (contentType.startsWith("application/grpc") || contentType.startsWith("application/connect+"));
}

/** Request bodies are read as sent: a compressed one (which could inflate far past the body limit) gets 415. */
function refuseCompressedBodies(handler: HttpHandler): HttpHandler {
  return (req, res) => {
    res.once("finish", drainUnread);
    if (res instanceof Http2ServerResponse && !isStreamingRpc(req.headers["content-type"])) {
      res.writeHead = heldWriteHead as Http2ServerResponse["writeHead"];
      res.write = heldWrite as Http2ServerResponse["write"];
      res.end = heldEnd as Http2ServerResponse["end"];
    }
    const encoding = req.headers["content-encoding"] ?? req.headers["connect-content-encoding"];
    if (encoding === undefined || encoding === "identity") return handler(req, res);
    sendJson(res, 415, COMPRESSED);
  };
}

function headerOf(req: Req, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === "string" ? value : value?.[0];
}

export interface RunningServer extends HttpListener {
  /** Listening on loopback only: /metrics is open, and the Host header must name loopback. */
  readonly loopback: boolean;
}

/** Whether a request is a gRPC or gRPC-Web call (by its content type). */
function isGrpcRequest(req: Req): boolean {
  const type = req.headers["content-type"];
  return typeof type === "string" && type.startsWith("application/grpc");
}

/** Answers a gRPC call with its status only (a trailers-only response): HTTP 200, the status in the headers. */
function grpcStatusOnly(req: Req, res: AnyResponse, error: SmmfError): void {
  const type = String(req.headers["content-type"]);
  const headers = { "content-type": type.startsWith("application/grpc-web") ? "application/grpc-web+proto" : "application/grpc", "grpc-status": String(error.grpcCode), "grpc-message": grpcMessage(error.message) };
  // On HTTP/2, one HEADERS frame that ends the stream (what gRPC clients read as trailers-only).
  if (res instanceof Http2ServerResponse && !res.stream.headersSent && !res.stream.destroyed) return void res.stream.respond({ ":status": 200, ...headers }, { endStream: true });
  res.writeHead(200, headers);
  res.end();
}

/**
 * The one server shell of every role (gateway, controller, worker, and so `smmf serve`): REST, gRPC, gRPC-Web
 * and Connect on one port (HTTP/1.1 and h2, cleartext or TLS), with the checks every route and RPC goes through in one place,
 * outermost first: TLS (and on workers the client certificate's role), the loopback Host check (DNS rebinding), CORS for listed origins only, the cluster
 * credential on RPCs (workers), and API keys with the role each route or RPC needs. A role registers its
 * services and its REST handler; it cannot add a route that misses the checks. Every port also serves gRPC
 * health checking and server reflection, and answers a gRPC call of a method it lacks with UNIMPLEMENTED.
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const loopback = isLoopbackHost(options.host);
  const interceptors: Interceptor[] = [];
  const mtls = options.tls?.requireClientCertificate === true;
  if (mtls) interceptors.push(requirePeerRole());
  if (options.clusterSecret) interceptors.push(requireClusterCredential(options.clusterSecret));
  if (options.auth) interceptors.push(authInterceptor(options.auth));
  const auth = options.auth;
  const rest = (req: Req, res: AnyResponse): void => {
    // A gRPC call of a method this port does not serve: a gRPC status, not an HTTP answer its client cannot read
    // (UNAUTHENTICATED without a key where keys are enforced, so that a caller without one learns nothing).
    if (isGrpcRequest(req)) {
      drainBody(req);
      let refusal: SmmfError | undefined;
      if (auth) {
        try {
          auth.authorize((name) => headerOf(req, name), ApiKeyRole.INFERENCE);
        } catch (err) {
          refusal = toSmmfError(err);
        }
      }
      return grpcStatusOnly(req, res, refusal ?? new SmmfError("unimplemented", `unknown method ${(req.url ?? "/").split("?")[0]}`));
    }
    let key: ApiKey | null = null;
    if (auth) {
      try {
        const role = restRole(req.method ?? "GET", (req.url ?? "/").split("?")[0], loopback);
        if (role) key = auth.authorize((name) => headerOf(req, name), role);
      } catch (err) {
        drainBody(req);
        // In the dialect of the route asked for (Anthropic's clients read Anthropic's error shape).
        const answer = errorAnswer(toSmmfError(err), dialectOf((req.url ?? "/").split("?")[0]));
        return sendJson(res, answer.status, answer.body);
      }
    }
    options.rest(req, res, key);
  };
  const handler = connectNodeAdapter({
    interceptors,
    readMaxBytes: options.readMaxBytes ?? 16 * 1024 * 1024,
    // No request decompression: a small compressed body cannot grow past the read limit in memory.
    acceptCompression: [],
    contextValues: (mtls
      ? (req: Req) => {
          const values = options.contextValues?.(req) ?? createContextValues();
          return values.set(PEER_ROLES, peerRolesOf(req));
        }
      : options.contextValues) as Parameters<typeof connectNodeAdapter>[0]["contextValues"],
    routes(router) {
      options.routes(router);
      // The standard gRPC services of every port: health checking and server reflection.
      const services = () => [...new Set(router.handlers.map((h) => h.service))];
      router.service(Health, createHealthService(options.serving ?? (() => true), () => services().map((s) => s.typeName)));
      const [reflection, reflectionAlpha] = createReflectionServices(services);
      router.service(ServerReflection, reflection);
      router.service(ServerReflectionAlpha, reflectionAlpha);
      parseErrorsAsInvalid(router);
    },
    fallback: rest as unknown as Parameters<typeof connectNodeAdapter>[0]["fallback"],
  });
  // API keys are a Connect interceptor: a server that checks them serves every call through Connect.
  const generate = options.grpcGenerate && !options.auth ? createGrpcGenerateHandler(options.grpcGenerate, { clusterSecret: options.clusterSecret, mtls, readMaxBytes: options.readMaxBytes ?? 16 * 1024 * 1024 }) : undefined;
  const rpc: HttpHandler = generate
    ? (req, res) => {
        if (res instanceof Http2ServerResponse && generate.accepts(req as Http2ServerRequest)) return generate.handle(req as Http2ServerRequest, res);
        handler(req, res);
      }
    : handler;
  const listener = await listenHttp(guardHost(withCors(refuseCompressedBodies(rpc), options.corsOrigins ?? []), loopback), options.host, options.port, { ...options.limits, tls: options.tls });
  return { port: listener.port, host: listener.host, close: (graceMs) => listener.close(graceMs), loopback };
}
