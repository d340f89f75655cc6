import { randomUUID } from "node:crypto";
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { keyAllowsModel } from "../auth/Authenticator.js";
import { API_KEY } from "../auth/authInterceptor.js";
import type { KeyAccounting } from "../auth/KeyAccounting.js";
import { InferenceService, SamplingParamsSchema } from "../gen/smmf/v1/inference_pb.js";
import type { Instance } from "../gen/smmf/v1/instance_pb.js";
import { asConnectError } from "../errors/asConnectError.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { Registry } from "../registry/Registry.js";
import { disabledTelemetry, type Telemetry } from "../telemetry/Telemetry.js";
import { linkSignals } from "../util/linkSignals.js";
import { readGenerateStart, watchForCancel } from "../util/watchForCancel.js";
import { parseGenerateStart } from "../worker/parseGenerateStart.js";
import type { InferenceRouter } from "./InferenceRouter.js";
import { RequestObservation, type ObservedEndpoint } from "./RequestObservation.js";
import { checkCountTokens, checkEmbedInputs, checkRerankInputs, checkGenerateStart, DEFAULT_REQUEST_CAPS, type RequestCaps } from "./requestCaps.js";
import { unknownModel } from "./unknownModel.js";

const cancelled = () => new SmmfError("cancelled", "request cancelled");

/**
 * An error reading the caller's request stream — a message that does not parse, a broken envelope, a compressed
 * flag without an encoding — is the caller's: invalid_argument, not the internal error Connect reports it as
 * (which would also lose its message). Other errors (a message over the size limit, a cancellation) pass unchanged.
 */
export function requestStreamError(err: unknown): unknown {
  if (err instanceof ConnectError && !err.metadata.has("smmf-error-code") && (err.code === Code.Internal || err.code === Code.InvalidArgument)) {
    return new SmmfError("invalid_argument", `The request stream is malformed: ${err.rawMessage.slice(0, 200)}`);
  }
  return err;
}

/** Refuses a model the call's API key may not use, like a model that does not exist. */
function checkModel(ctx: HandlerContext, model: string): void {
  if (!keyAllowsModel(ctx.values.get(API_KEY), model)) throw unknownModel(model);
}

/**
 * InferenceService as the gateway serves it: each call goes to an instance of the requested model. Generate,
 * Embed and Rerank calls are observed like REST requests (metrics, trace, request log; endpoints
 * `grpc_generate`, `grpc_embed` and `grpc_rerank`; their status is the HTTP status of their SMMF code).
 */
export function createGatewayInferenceService(router: InferenceRouter, registry?: Registry, telemetry: Telemetry = disabledTelemetry(), accounting?: KeyAccounting, caps: RequestCaps = DEFAULT_REQUEST_CAPS): ServiceImpl<typeof InferenceService> {
  const admit = (ctx: HandlerContext) => accounting?.admit(ctx.values.get(API_KEY), (name, value) => ctx.responseHeader.set(name, value));
  const isKnownModel = (model: string) => registry?.snapshot().some((i) => i.model === model) ?? false;
  // The server names every request itself: a caller's request_id is kept beside it, never as the log's key
  // (where it could overwrite another caller's row and its feedback).
  const observe = (endpoint: ObservedEndpoint, requestId: string, ctx: HandlerContext) => {
    const obs = new RequestObservation(telemetry, endpoint, `grpc-${randomUUID().replaceAll("-", "")}`, Object.fromEntries(ctx.requestHeader), isKnownModel);
    if (requestId) obs.clientRequestId = requestId.slice(0, 128);
    obs.keyName = ctx.values.get(API_KEY)?.name ?? null;
    return obs;
  };
  /** A unary call observed like a REST request: checked, admitted, routed; its usage counted; any error ends it with its status. */
  async function observedUnary<T extends { usage?: { promptTokens: number } }>(endpoint: ObservedEndpoint, requestId: string, ctx: HandlerContext, model: string, prompt: unknown, check: () => void, call: (obs: RequestObservation) => Promise<T>): Promise<T> {
    const obs = observe(endpoint, requestId, ctx);
    ctx.responseHeader.set("x-request-id", obs.id);
    obs.describe({ model, params: {}, prompt });
    try {
      checkModel(ctx, model);
      check();
      const onUsage = admit(ctx);
      const res = await call(obs);
      onUsage?.(res.usage?.promptTokens ?? 0, 0);
      obs.end(200, { usage: { promptTokens: res.usage?.promptTokens ?? 0, completionTokens: 0 } });
      return res;
    } catch (err) {
      const error = toSmmfError(err);
      obs.end(error.httpStatus, { error });
      throw asConnectError(error);
    }
  }

  return {
    async *generate(requests, ctx) {
      const abort = linkSignals(ctx.signal);
      let obs: RequestObservation | undefined;
      let finished = false;
      try {
        const iterator = requests[Symbol.asyncIterator]();
        const start = await readGenerateStart(iterator).catch((err: unknown) => {
          throw requestStreamError(err);
        });
        checkModel(ctx, start.model);
        const onUsage = admit(ctx);
        obs = observe("grpc_generate", start.requestId, ctx);
        ctx.responseHeader.set("x-request-id", obs.id);
        const input = start.input.case === "chat" ? start.input.value.messages.map((m) => ({ role: m.role, content: m.content })) : start.input.value;
        obs.describe({ model: start.model, stream: true, params: start.params ? (toJson(SamplingParamsSchema, start.params) as Record<string, unknown>) : {}, prompt: input });
        checkGenerateStart(start, caps);
        parseGenerateStart(start);
        watchForCancel(iterator, () => abort.abort());
        const observation = obs;
        for await (const res of router.generate(start, abort.signal, (instance: Instance, attempt: number) => observation.attempt(instance, attempt), obs.traceHeaders())) {
          if (res.kind.case === "delta") observation.delta(res.kind.value.pieces, res.kind.value.otherTokens);
          else if (res.kind.case === "done") {
            const usage = res.kind.value.usage;
            onUsage?.(usage?.promptTokens ?? 0, usage?.completionTokens ?? 0);
            observation.end(200, { usage: usage && { promptTokens: usage.promptTokens, completionTokens: usage.completionTokens } });
          }
          yield res;
        }
        finished = true;
      } catch (err) {
        const error = ctx.signal.aborted ? cancelled() : toSmmfError(err);
        obs?.end(error.httpStatus, { error });
        throw asConnectError(error);
      } finally {
        // A caller that stopped reading: a cancellation.
        if (abort.signal.aborted || ctx.signal.aborted) obs?.end(499, { error: cancelled() });
        // A finished call only lets go of its caller's signal; an early end cancels what is still running.
        if (finished) abort.unlink();
        else abort.abort();
      }
    },
    embed(req, ctx) {
      return observedUnary("grpc_embed", req.requestId, ctx, req.model, req.inputs, () => {
        if (req.inputs.length === 0) throw new SmmfError("invalid_argument", "'inputs' must hold at least one string", { param: "input" });
        checkEmbedInputs(req.inputs, caps);
      }, (obs) => router.embed(req, ctx.signal, (instance, attempt) => obs.attempt(instance, attempt), obs.traceHeaders()));
    },
    rerank(req, ctx) {
      return observedUnary("grpc_rerank", req.requestId, ctx, req.model, [req.query, ...req.documents], () => checkRerankInputs(req.query, req.documents, caps), (obs) =>
        router.rerank(req, ctx.signal, (instance, attempt) => obs.attempt(instance, attempt), obs.traceHeaders()),
      );
    },
    async countTokens(req, ctx) {
      try {
        checkModel(ctx, req.model);
        checkCountTokens(req, caps);
        return await router.countTokens(req, ctx.signal);
      } catch (err) {
        throw asConnectError(err);
      }
    },
  };
}
