import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { toJson } from "@bufbuild/protobuf";
import type { ControllerApi } from "../controller/createControllerService.js";
import { listModels, openAiModel } from "../controller/listModels.js";
import { allowMethods } from "../net/allowMethods.js";
import { createControlRoutes } from "../controller/createControlRoutes.js";
import { createRequestLogRoutes } from "./createRequestLogRoutes.js";
import { trafficRoute } from "./trafficRoute.js";
import { RequestObservation, type ObservedEndpoint, type RequestDescription } from "./RequestObservation.js";
import type { Telemetry } from "../telemetry/Telemetry.js";
import { InstanceSchema } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import { dialectOf, errorAnswer } from "../errors/errorDialect.js";
import type { Registry } from "../registry/Registry.js";
import type { Logger } from "../telemetry/createLogger.js";
import { chatFormat, parseChatRequest } from "./chatCompletions.js";
import { parseCountTokensRequest, parseMessagesRequest } from "./anthropicMessages.js";
import { streamMessages } from "./streamMessages.js";
import { parseResponsesRequest, type ChatItem } from "./openaiResponses.js";
import { ResponseStore } from "./ResponseStore.js";
import { parseRerankRequest, rerankResponse, RERANK_METHOD_NAMES } from "./rerank.js";
import { streamResponses } from "./streamResponses.js";
import { create } from "@bufbuild/protobuf";
import { CountTokensRequestSchema } from "../gen/smmf/v1/inference_pb.js";
import { completionFormat, parseCompletionRequest } from "./completions.js";
import { embeddingsResponse, parseEmbeddingsRequest } from "./embeddings.js";
import type { InferenceRouter } from "./InferenceRouter.js";
import { readJsonBody } from "../net/readJsonBody.js";
import { decodeSegment } from "../net/decodeSegment.js";
import type { ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { keyAllowsModel } from "../auth/Authenticator.js";
import type { RestHandler } from "../net/startServer.js";
import type { KeyAccounting, UsageListener } from "../auth/KeyAccounting.js";
import type { ServiceImpl } from "@connectrpc/connect";
import type { KeyService } from "../gen/smmf/v1/auth_pb.js";
import { sendJson, type AnyResponse } from "../net/sse.js";
import { whileConnected } from "../net/whileConnected.js";
import { createConsoleHandler } from "../net/serveConsole.js";
import { streamGeneration } from "./streamGeneration.js";
import { unknownModel } from "./unknownModel.js";
import { DEFAULT_REQUEST_CAPS, type RequestCaps } from "./requestCaps.js";

export interface RestOptions {
  router: InferenceRouter;
  registry: Registry;
  logger: Logger;
  /** Largest accepted request body, in bytes. */
  maxBodyBytes: number;
  /** The controller API, served as REST under /api/v1. */
  controller: ControllerApi;
  telemetry: Telemetry;
  /** Per-key limits and usage of inference requests. */
  accounting?: KeyAccounting;
  /** API key management, served as REST under /api/v1/keys (when keys are in use). */
  keys?: ServiceImpl<typeof KeyService>;
  /** Caps on messages, prompt characters and stop strings (defaults: DEFAULT_REQUEST_CAPS). */
  caps?: RequestCaps;
}

/** The sampling and limit fields of a body, as the request log keeps them. */
const PARAM_FIELDS = ["max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stop_sequences", "frequency_penalty", "presence_penalty", "stream", "encoding_format", "dimensions"];

function describeBody(body: Record<string, unknown>): RequestDescription {
  const params: Record<string, unknown> = {};
  for (const field of PARAM_FIELDS) if (body[field] !== undefined) params[field] = body[field];
  // An Anthropic request's system prompt is part of its prompt.
  const prompt = body.system !== undefined && Array.isArray(body.messages) ? [{ role: "system", content: body.system }, ...(body.messages as unknown[])] : (body.messages ?? body.prompt ?? body.input);
  return { model: typeof body.model === "string" ? body.model.slice(0, 256) : "", stream: body.stream === true, params, prompt: body.query !== undefined && body.documents !== undefined ? { query: body.query, documents: body.documents } : prompt };
}

type Req = IncomingMessage | Http2ServerRequest;

function requestIdFor(prefix: string): string {
  return `${prefix}-${randomUUID().replaceAll("-", "")}`;
}

/** The OpenAI-compatible REST API and the health endpoints. */
export function createRestHandler(options: RestOptions): RestHandler {
  const { router, registry, logger, maxBodyBytes, telemetry } = options;
  const caps = options.caps ?? DEFAULT_REQUEST_CAPS;
  const control = createControlRoutes(options.controller, maxBodyBytes, options.keys, registry);
  const requestLogRoutes = createRequestLogRoutes(telemetry, maxBodyBytes);
  const responseStore = new ResponseStore();
  const serveConsole = createConsoleHandler();
  const isKnownModel = (model: string) => registry.snapshot().some((i) => i.model === model);

  /** Runs an inference endpoint under an observation that ends with the status answered, errors included. */
  async function observed(endpoint: ObservedEndpoint, prefix: string, req: Req, res: AnyResponse, body: (obs: RequestObservation, id: string) => Promise<void>): Promise<void> {
    allowMethods(req, "POST");
    const id = requestIdFor(prefix);
    const obs = new RequestObservation(telemetry, endpoint, id, req.headers, isKnownModel);
    // Every answer, errors included, names its request: the id to look it up by and give feedback on.
    res.setHeader("x-request-id", id);
    try {
      await body(obs, id);
    } catch (err) {
      const error = toSmmfError(err);
      obs.end(error.httpStatus, { error });
      throw err;
    }
  }

  /** Admits an inference request of `key` by its limits (429 when over), with the x-ratelimit-* headers. */
  function admit(key: ApiKey | null, res: AnyResponse): UsageListener | undefined {
    return key ? options.accounting?.admit(key, (name, value) => res.setHeader(name, value)) : undefined;
  }

  async function readDescribed(req: Req, obs: RequestObservation, key: ApiKey | null): Promise<Record<string, unknown>> {
    obs.keyName = key?.name ?? null;
    const body = await readJsonBody(req, maxBodyBytes);
    if (telemetry.enabled) obs.describe(describeBody(body));
    // A model the key may not use is answered like one that does not exist: names do not leak.
    if (typeof body.model === "string" && !keyAllowsModel(key, body.model)) throw unknownModel(body.model);
    return body;
  }

  async function handle(req: Req, res: AnyResponse, key: ApiKey | null): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const now = () => Math.floor(Date.now() / 1000);
    switch (path) {
      case "/healthz":
        return sendJson(res, 200, { status: "ok" });
      case "/readyz": {
        const ready = listModels(registry.snapshot()).some((m) => m.readyReplicas > 0);
        return sendJson(res, ready ? 200 : 503, { status: ready ? "ready" : "no model instance is online" });
      }
      case "/api/v1/instances": {
        // The registry as this gateway sees it, with whether each instance can be picked now.
        allowMethods(req, "GET");
        const data = registry.snapshot().map((i) => ({ ...(toJson(InstanceSchema, i) as object), pickable: router.isPickable(i), gatewayInFlight: router.inFlightOf(i.instanceId) }));
        return sendJson(res, 200, { object: "list", data });
      }
      case "/v1/models":
        allowMethods(req, "GET");
        return sendJson(res, 200, { object: "list", data: listModels(registry.snapshot()).filter((m) => keyAllowsModel(key, m.name)).map(openAiModel) });
      case "/v1/chat/completions":
        return observed("chat_completions", "chatcmpl", req, res, async (obs, id) => {
          const request = parseChatRequest(await readDescribed(req, obs, key), id, caps);
          return streamGeneration(router, res, request, chatFormat(id, request.start.model, now(), request.logprobs), obs, admit(key, res));
        });
      case "/v1/completions":
        return observed("completions", "cmpl", req, res, async (obs, id) => {
          const request = parseCompletionRequest(await readDescribed(req, obs, key), id, caps);
          return streamGeneration(router, res, request, completionFormat(id, request.start.model, now(), request.logprobs), obs, admit(key, res));
        });
      case "/v1/messages":
        // Anthropic's Messages API (errors in its shape: see dialectOf).
        // The message id is the request's id (x-request-id, the request log's key).
        return observed("messages", "msg", req, res, async (obs, id) => {
          const request = parseMessagesRequest(await readDescribed(req, obs, key), id, caps);
          return streamMessages(router, res, request, obs, admit(key, res));
        });
      case "/v1/responses":
        // OpenAI's Responses API; a stored response is its key's own (or anyone's, without keys).
        return observed("responses", "resp", req, res, async (obs, id) => {
          const body = await readDescribed(req, obs, key);
          const owner = key?.id ?? "";
          let previous: ChatItem[] = [];
          if (body.previous_response_id !== undefined && body.previous_response_id !== null) {
            if (typeof body.previous_response_id !== "string") throw new SmmfError("invalid_argument", "Invalid type for 'previous_response_id': expected a string.", { param: "previous_response_id" });
            const stored = responseStore.get(body.previous_response_id, owner);
            if (!stored) throw new SmmfError("not_found", `Previous response with id '${body.previous_response_id}' not found (responses are kept by the gateway that made them, for an hour at most).`, { param: "previous_response_id" });
            previous = stored.conversation;
          }
          const request = parseResponsesRequest(body, id, previous, caps);
          return streamResponses(router, res, request, obs, responseStore, owner, admit(key, res));
        });
      case "/v1/messages/count_tokens": {
        allowMethods(req, "POST");
        const body = await readJsonBody(req, maxBodyBytes);
        if (typeof body.model === "string" && !keyAllowsModel(key, body.model)) throw unknownModel(body.model);
        const { start } = parseCountTokensRequest(body, caps);
        admit(key, res)?.(0, 0);
        const request = create(CountTokensRequestSchema, { model: start.model, input: start.input.case === "chat" ? { case: "chat", value: start.input.value } : { case: undefined } });
        const counted = await whileConnected(res, (signal) => router.countTokens(request, signal));
        return sendJson(res, 200, { input_tokens: counted.tokenCount });
      }
      case "/v1/rerank":
        return observed("rerank", "rerank", req, res, async (obs, id) => {
          const call = parseRerankRequest(await readDescribed(req, obs, key), id, caps);
          const onUsage = admit(key, res);
          const result = await whileConnected(res, (signal) => router.rerank(call.request, signal, (instance, attempt) => obs.attempt(instance, attempt), obs.traceHeaders()));
          onUsage?.(result.usage?.promptTokens ?? 0, 0);
          sendJson(res, 200, rerankResponse(id, call, result), { "x-request-id": id, "x-smmf-instance": result.instanceId, "x-smmf-rerank-method": RERANK_METHOD_NAMES[result.method] ?? "unknown" });
          obs.end(200, { usage: { promptTokens: result.usage?.promptTokens ?? 0, completionTokens: 0 } });
        });
      case "/v1/embeddings":
        return observed("embeddings", "emb", req, res, async (obs, id) => {
          const request = parseEmbeddingsRequest(await readDescribed(req, obs, key), id, caps);
          const onUsage = admit(key, res);
          const result = await whileConnected(res, (signal) => router.embed(request.request, signal, (instance, attempt) => obs.attempt(instance, attempt), obs.traceHeaders()));
          onUsage?.(result.usage?.promptTokens ?? 0, 0);
          sendJson(res, 200, embeddingsResponse(request, result), { "x-request-id": id, "x-smmf-instance": result.instanceId });
          obs.end(200, { usage: { promptTokens: result.usage?.promptTokens ?? 0, completionTokens: 0 } });
        });
      case "/metrics": {
        allowMethods(req, "GET");
        const text = await telemetry.metrics.render();
        res.writeHead(200, { "content-type": telemetry.metrics.contentType, "content-length": String(Buffer.byteLength(text)) });
        return void res.end(text);
      }
    }
    if (serveConsole(req, res, path)) return;
    if (path.startsWith("/api/v1/requests") && (await requestLogRoutes(req, res, path))) return;
    if (path === "/api/v1/traffic") return trafficRoute(telemetry, req, res);
    if (path.startsWith("/api/v1/") && (await control(req, res, path, key))) return;
    if (path.startsWith("/v1/responses/")) {
      allowMethods(req, "GET", "DELETE");
      const id = decodeSegment(path.slice("/v1/responses/".length));
      const owner = key?.id ?? "";
      const notFound = () => new SmmfError("not_found", `Response with id '${id}' not found.`);
      if (req.method === "DELETE") {
        if (!responseStore.get(id, owner)) throw notFound();
        responseStore.delete(id);
        return sendJson(res, 200, { id, object: "response.deleted", deleted: true });
      }
      const stored = responseStore.get(id, owner);
      if (!stored) throw notFound();
      return sendJson(res, 200, stored.response);
    }
    if (path.startsWith("/v1/models/")) {
      allowMethods(req, "GET");
      const name = decodeSegment(path.slice("/v1/models/".length));
      const model = listModels(registry.snapshot()).find((m) => m.name === name && keyAllowsModel(key, m.name));
      if (!model) throw unknownModel(name);
      return sendJson(res, 200, openAiModel(model));
    }
    throw new SmmfError("not_found", `Unknown route: ${req.method} ${path}`);
  }

  return (req, res, key) => {
    handle(req, res, key).catch((err: unknown) => {
      const error = toSmmfError(err);
      if (error.code === "internal") logger.error("request failed", { path: req.url, error: String((err as Error)?.stack ?? err) });
      if (res.headersSent) {
        if (!res.writableEnded) res.end();
        return;
      }
      const headers: Record<string, string> = {};
      if (error.retryAfterSeconds !== undefined) headers["retry-after"] = String(error.retryAfterSeconds);
      const answer = errorAnswer(error, dialectOf((req.url ?? "/").split("?")[0]));
      if (!res.destroyed) sendJson(res, answer.status, answer.body, headers);
    });
  };
}
