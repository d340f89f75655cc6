import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { ConnectError } from "@connectrpc/connect";
import { GenerateRequestSchema, GenerateResponseSchema, type GenerateRequest } from "../gen/smmf/v1/inference_pb.js";
import { connectErrorOf } from "../errors/asConnectError.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import { CLUSTER_HEADER, clusterCredentialRefusal } from "../auth/clusterCredential.js";
import { peerRoleRefusal, peerRolesOf } from "../auth/peerRoles.js";
import type { CallContext, WorkerInference } from "./createWorkerInferenceService.js";
import { untilDrained } from "../net/untilDrained.js";
import { GrpcFrameReader, grpcMessage } from "../net/grpcFrames.js";
import { fastCodec } from "../net/fastCodec.js";

export const GENERATE_PATH = "/smmf.v1.InferenceService/Generate";

export interface GrpcGenerateOptions {
  /** Every call must present it (smmf-cluster-credential). */
  clusterSecret?: string;
  /** mTLS: the client certificate's role must allow Generate. */
  mtls: boolean;
  /** Largest request message, in bytes. */
  readMaxBytes: number;
}

const generateRequests = fastCodec(GenerateRequestSchema);
const generateResponses = fastCodec(GenerateResponseSchema);

const GRPC_HEADERS = { "content-type": "application/grpc+proto" } as const;
const OK_TRAILERS = { "grpc-status": "0" } as const;

/** grpc-timeout ("100m", "5S", ...: at most 8 digits and a unit) in ms; undefined when absent or not well-formed. */
export function grpcTimeoutMs(value: string | undefined): number | undefined {
  const m = value === undefined ? null : /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]);
  switch (m[2]) {
    case "H": return n * 3_600_000;
    case "M": return n * 60_000;
    case "S": return n * 1_000;
    case "m": return n;
    case "u": return n / 1_000;
    default: return n / 1_000_000;
  }
}


/**
 * The request stream of one call, fed by the HTTP/2 stream's frames: an async iterator of GenerateRequest
 * messages that ends when the client half-closes, and fails with the error of a frame that cannot be read.
 */
class RequestMessages implements AsyncIterableIterator<GenerateRequest> {
  private readonly ready: GenerateRequest[] = [];
  private waiting?: { resolve: (r: IteratorResult<GenerateRequest>) => void; reject: (err: unknown) => void };
  private ended = false;
  private error?: unknown;

  push(message: GenerateRequest): void {
    const w = this.waiting;
    if (w) {
      this.waiting = undefined;
      w.resolve({ done: false, value: message });
    } else this.ready.push(message);
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    const w = this.waiting;
    this.waiting = undefined;
    if (!w) return;
    if (error === undefined) w.resolve({ done: true, value: undefined });
    else w.reject(error);
  }

  next(): Promise<IteratorResult<GenerateRequest>> {
    const message = this.ready.shift();
    if (message) return Promise.resolve({ done: false, value: message });
    if (this.ended) return this.error === undefined ? Promise.resolve({ done: true, value: undefined }) : Promise.reject(this.error);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<GenerateRequest> {
    return this;
  }
}

/**
 * The worker's Generate over gRPC (HTTP/2, application/grpc[+proto], uncompressed), served without Connect's
 * per-call machinery: the gateway's hot path. Every check a Connect call gets is made here too, in the same
 * order and with the same errors: the client certificate's role (mTLS), the cluster credential, the message size
 * limit, well-formed protobuf (INVALID_ARGUMENT), `grpc-timeout` (DEADLINE_EXCEEDED), a cancel message or a reset
 * stream (the generation stops). Answers are binary protobuf, framed, with grpc-status and the SMMF error
 * code in the trailers, exactly as Connect sends them. gRPC-Web, Connect, JSON and compressed calls, and every other
 * method, go to Connect (`accepts` says which calls this takes).
 */
export function createGrpcGenerateHandler(inference: WorkerInference, options: GrpcGenerateOptions) {
  const expected = options.clusterSecret === undefined ? undefined : Buffer.from(options.clusterSecret);

  function accepts(req: Http2ServerRequest): boolean {
    if (req.url !== GENERATE_PATH || req.method !== "POST") return false;
    const type = req.headers["content-type"];
    if (type !== "application/grpc" && type !== "application/grpc+proto") return false;
    const encoding = req.headers["grpc-encoding"];
    return encoding === undefined || encoding === "identity";
  }

  function handle(req: Http2ServerRequest, res: Http2ServerResponse): void {
    let responded = false;
    let finished = false;
    const abort = new AbortController();
    const respond = () => {
      if (responded) return;
      responded = true;
      res.writeHead(200, GRPC_HEADERS);
    };

    /** Ends the call with `err`: its status, message and SMMF metadata in the trailers. */
    const fail = (err: unknown) => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      const e = err instanceof ConnectError ? err : connectErrorOf(toSmmfError(err));
      const trailers: Record<string, string> = { "grpc-status": String(e.code), "grpc-message": grpcMessage(e.rawMessage) };
      e.metadata.forEach((value, key) => (trailers[key] = value));
      if (res.writableEnded || res.stream.destroyed) return;
      respond();
      res.addTrailers(trailers);
      res.end();
    };

    const refused =
      (options.mtls ? peerRoleRefusal("Generate", peerRolesOf(req)) : undefined) ??
      (expected ? clusterCredentialRefusal(expected, headerValue(req.headers[CLUSTER_HEADER])) : undefined);
    let deadline: NodeJS.Timeout | undefined;
    if (refused) {
      req.resume();
      return fail(refused);
    }

    const timeoutMs = grpcTimeoutMs(headerValue(req.headers["grpc-timeout"]));
    if (timeoutMs !== undefined) {
      deadline = setTimeout(() => {
        fail(new SmmfError("deadline_exceeded", "the call's deadline (grpc-timeout) has passed"));
        abort.abort();
      }, timeoutMs);
    }

    const requests = new RequestMessages();
    const reader = new GrpcFrameReader((bytes) => {
      let message: GenerateRequest;
      try {
        message = generateRequests.decode(bytes);
      } catch (err) {
        throw new SmmfError("invalid_argument", `the request message is not a valid smmf.v1.GenerateRequest: ${(err as Error).message}`);
      }
      requests.push(message);
    }, options.readMaxBytes);
    const onData = (chunk: Buffer) => {
      try {
        const problem = reader.add(chunk);
        if (problem?.kind === "compressed") throw new SmmfError("invalid_argument", "compressed gRPC messages are not accepted: send them uncompressed");
        if (problem) throw new SmmfError("resource_exhausted", `message size ${problem.length} is larger than configured readMaxBytes ${options.readMaxBytes}`);
      } catch (err) {
        req.off("data", onData);
        req.resume();
        requests.end(err);
        fail(err);
        abort.abort();
      }
    };
    req.on("data", onData);
    req.once("end", () => requests.end(reader.partial ? new SmmfError("invalid_argument", "the request stream ended inside a message") : undefined));
    // The client went away (a reset, a lost connection) before the answer ended: the generation stops.
    res.once("close", () => {
      clearTimeout(deadline);
      requests.end();
      if (!finished) {
        finished = true;
        abort.abort();
      }
    });

    const context: CallContext = { signal: abort.signal, requestHeader: req.headers };
    void (async () => {
      try {
        for await (const response of inference.generate(requests, context)) {
          if (finished) return;
          const frame = generateResponses.encodeFrame(response);
          respond();
          if (!res.write(frame)) await untilDrained(res);
        }
        if (finished || res.writableEnded) return;
        finished = true;
        clearTimeout(deadline);
        respond();
        res.addTrailers(OK_TRAILERS);
        res.end();
      } catch (err) {
        fail(err);
      }
    })();
  }

  return { accepts, handle };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : value?.[0];
}

export type GrpcGenerateHandler = ReturnType<typeof createGrpcGenerateHandler>;
