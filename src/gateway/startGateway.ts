import { listModels } from "../controller/listModels.js";
import { createControllerService } from "../controller/createControllerService.js";
import type { ListenerSettings } from "../net/listenerSettingsOf.js";
import { createControlPlane, type ControlPlane, type ControlPlaneOptions } from "../controller/createControlPlane.js";
import { ControllerService } from "../gen/smmf/v1/controller_pb.js";
import { InferenceService } from "../gen/smmf/v1/inference_pb.js";
import type { Authenticator } from "../auth/Authenticator.js";
import { KeyAccounting } from "../auth/KeyAccounting.js";
import { createKeyService } from "../auth/createKeyService.js";
import { KeyService } from "../gen/smmf/v1/auth_pb.js";
import { auditAddressValues } from "../controller/AuditAddress.js";
import { startServer, type RunningServer } from "../net/startServer.js";
import { KeyLimiter } from "../auth/KeyLimiter.js";
import type { Registry } from "../registry/Registry.js";
import type { Logger } from "../telemetry/createLogger.js";
import { collectRegistryMetrics } from "../telemetry/collectRegistryMetrics.js";
import { disabledTelemetry, type Telemetry } from "../telemetry/Telemetry.js";
import { createGatewayInferenceService } from "./createGatewayInferenceService.js";
import { createRestHandler } from "./createRestHandler.js";
import { InferenceRouter, type RouterOptions } from "./InferenceRouter.js";
import { requestCaps, type RequestCaps } from "./requestCaps.js";

export interface GatewayOptions extends ControlPlaneOptions {
  registry: Registry;
  logger: Logger;
  host: string;
  port: number;
  maxBodyBytes: number;
  routing?: Omit<RouterOptions, "logger">;
  /** The desired state and events the controller API works on; default: made beside the registry. */
  controlPlane?: ControlPlane;
  /** Metrics, traces and the request log; default: metrics only, nothing per request. */
  telemetry?: Telemetry;
  /** Checks API keys on every route and RPC; none: all open (as before keys existed). */
  auth?: Authenticator;
  /** Listener limits, and HTTPS when configured. */
  listener?: ListenerSettings;
  /** How many gateways share the API keys' limits (this one included); default 1. */
  fleetSize?: () => number;
  /** Web origins allowed to call the API from a browser (CORS); none by default. */
  corsOrigins?: readonly string[];
  /** Caps on one inference request: messages, prompt characters, stop strings (defaults where not set). */
  requestCaps?: Partial<RequestCaps>;
}

export interface RunningGateway {
  readonly port: number;
  readonly router: InferenceRouter;
  readonly url: string;
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves the OpenAI-compatible REST API, and the InferenceService and ControllerService over gRPC,
 * gRPC-Web and Connect, on one port (HTTP/1.1 and HTTP/2).
 */
export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const telemetry = options.telemetry ?? disabledTelemetry();
  const { metrics } = telemetry;
  const router = new InferenceRouter(options.registry, {
    logger: options.logger,
    ...options.routing,
    clusterSecret: options.clusterSecret,
    clientTls: options.clientTls,
    observer: telemetry.enabled
      ? {
          retried: (model, midStream) => (midStream ? metrics.failovers : metrics.retries).inc({ model }),
          ejected: (model, instance) => metrics.ejections.inc({ model, instance }),
          prefixRouted: (model, outcome) => metrics.prefixRouting.inc(1, model, outcome),
        }
      : undefined,
  });
  const stopCollecting = [
    metrics.onCollect(() => {
      metrics.inFlight.reset();
      metrics.queued.reset();
      for (const [model, load] of router.loadByModel()) {
        metrics.inFlight.set({ model }, load.inFlight);
        metrics.queued.set({ model }, load.queued);
      }
    }),
    collectRegistryMetrics(metrics, options.registry),
  ];
  const plane = options.controlPlane ?? createControlPlane(options.registry, options.logger, options);
  const controller = createControllerService(plane);
  const fleetSize = options.fleetSize ?? (() => 1);
  const limiter = new KeyLimiter(fleetSize);
  const accounting = new KeyAccounting(limiter, metrics);
  stopCollecting.push(metrics.onCollect(() => metrics.fleetSize.set(fleetSize())));
  const stopKeyWatch = options.auth?.store.subscribe(() => limiter.retain(new Set(options.auth!.store.keys().keys())));
  const keys = options.auth ? createKeyService(options.auth.store, plane.audit, options.logger) : undefined;
  const caps = requestCaps(options.requestCaps);
  const rest = createRestHandler({ router, registry: options.registry, logger: options.logger, maxBodyBytes: options.maxBodyBytes, controller, telemetry, accounting, keys, caps });
  let listener: RunningServer;
  let closing = false;
  try {
    listener = await startServer({
      host: options.host,
      port: options.port,
      auth: options.auth,
      corsOrigins: options.corsOrigins,
      contextValues: auditAddressValues,
      readMaxBytes: options.maxBodyBytes,
      limits: options.listener?.limits,
      tls: options.listener?.tls,
      // gRPC health: serving while a model has an online instance (as /readyz), and not once it closes.
      serving: () => !closing && listModels(options.registry.snapshot()).some((m) => m.readyReplicas > 0),
      routes(r) {
        r.service(InferenceService, createGatewayInferenceService(router, options.registry, telemetry, accounting, caps));
        r.service(ControllerService, controller);
        if (keys) r.service(KeyService, keys);
      },
      rest,
    });
  } catch (err) {
    router.close();
    stopCollecting.forEach((stop) => stop());
    stopKeyWatch?.();
    if (!options.controlPlane) await plane.close();
    throw err;
  }
  const url = `${options.listener?.tls ? "https" : "http"}://${options.host.includes(":") ? `[${options.host}]` : options.host}:${listener.port}`;
  options.logger.info("gateway listening", { url });
  return {
    port: listener.port,
    router,
    url,
    async close(graceMs = 0) {
      closing = true;
      await listener.close(graceMs);
      router.close();
      stopCollecting.forEach((stop) => stop());
      stopKeyWatch?.();
      if (!options.controlPlane) await plane.close();
    },
  };
}
