import { createConsoleHandler } from "../net/serveConsole.js";
import { randomUUID } from "node:crypto";
import type { ListenerSettings } from "../net/listenerSettingsOf.js";
import { ControllerService, EventType } from "../gen/smmf/v1/controller_pb.js";
import { toSmmfError } from "../errors/SmmfError.js";
import { createControlRoutes } from "./createControlRoutes.js";
import { sendJson } from "../net/sse.js";
import { startServer, type RestHandler } from "../net/startServer.js";
import { createKeyService } from "../auth/createKeyService.js";
import { KeyService } from "../gen/smmf/v1/auth_pb.js";
import type { EtcdRegistry } from "../registry/EtcdRegistry.js";
import type { Logger } from "../telemetry/createLogger.js";
import { collectRegistryMetrics } from "../telemetry/collectRegistryMetrics.js";
import { Metrics } from "../telemetry/Metrics.js";
import { createControllerService } from "./createControllerService.js";
import { createControlPlane, type ControlPlaneOptions } from "./createControlPlane.js";
import { LeaderElection } from "./LeaderElection.js";
import { startReconciling } from "./startReconciling.js";
import type { Authenticator } from "../auth/Authenticator.js";
import { auditAddressValues } from "./AuditAddress.js";

export interface ControllerOptions extends ControlPlaneOptions {
  registry: EtcdRegistry;
  logger: Logger;
  host: string;
  port: number;
  /** Controller id; default a random one. */
  id?: string;
  /** TTL of the leader's lease: a dead leader is replaced within about this long. */
  leaseTtlSeconds: number;
  maxBodyBytes?: number;
  metrics?: Metrics;
  /** Checks API keys on every route and RPC; none: all open. */
  auth?: Authenticator;
  /** Listener limits, and HTTPS when configured. */
  listener?: ListenerSettings;
}

export interface RunningController {
  readonly id: string;
  readonly url: string;
  readonly port: number;
  readonly election: LeaderElection;
  close(): Promise<void>;
}

/**
 * A controller: ControllerService (gRPC, gRPC-Web, Connect), the same API as REST under /api/v1, and
 * /healthz, on one port; it campaigns for leadership and, while it leads, runs the control loop.
 */
export async function startController(options: ControllerOptions): Promise<RunningController> {
  const id = options.id || `controller-${randomUUID().slice(0, 8)}`;
  const { logger, registry } = options;
  const plane = createControlPlane(registry, logger, options);
  const metrics = options.metrics ?? new Metrics();
  metrics.leader.set(0);
  const stopCollecting = collectRegistryMetrics(metrics, registry);
  const service = createControllerService(plane);
  const keys = options.auth ? createKeyService(options.auth.store, plane.audit, logger) : undefined;
  const control = createControlRoutes(service, options.maxBodyBytes ?? 1024 * 1024, keys, registry);
  let election: LeaderElection | undefined;
  const serveConsole = createConsoleHandler();
  const rest: RestHandler = (req, res, key) => {
    const path = (req.url ?? "/").split("?")[0];
    void (async () => {
      if (path === "/metrics") {
        const text = await metrics.render();
        res.writeHead(200, { "content-type": metrics.contentType });
        return void res.end(text);
      }
      if (path === "/healthz") return sendJson(res, 200, { status: "ok", controller: id, leader: election?.isLeader ?? false, term: election?.term?.toString() ?? null });
      // Ready while it takes part in the election (it holds an etcd lease): a standby is as ready as the leader.
      if (path === "/readyz") {
        const ready = election?.campaigning ?? false;
        return sendJson(res, ready ? 200 : 503, { status: ready ? "ok" : "etcd unreachable", controller: id, leader: election?.isLeader ?? false });
      }
      if (serveConsole(req, res, path)) return;
      if (path.startsWith("/api/v1/") && (await control(req, res, path, key))) return;
      sendJson(res, 404, { error: { message: `Unknown route: ${req.method} ${path}`, type: "not_found_error", param: null, code: "not_found" } });
    })().catch((err: unknown) => {
      const error = toSmmfError(err);
      if (error.code === "internal") logger.error("request failed", { path, error: String((err as Error)?.stack ?? err) });
      if (!res.headersSent) sendJson(res, error.httpStatus, error.toOpenAiBody());
      else if (!res.writableEnded) res.end();
    });
  };
  const listener = await startServer({
    host: options.host,
    port: options.port,
    auth: options.auth,
    contextValues: auditAddressValues,
    readMaxBytes: options.maxBodyBytes ?? 1024 * 1024,
    limits: options.listener?.limits,
    tls: options.listener?.tls,
    // gRPC health: serving while it takes part in the election (as /readyz).
    serving: () => election?.campaigning ?? false,
    routes(r) {
      r.service(ControllerService, service);
      if (keys) r.service(KeyService, keys);
    },
    rest,
  });
  const url = `${options.listener?.tls ? "https" : "http"}://${options.host.includes(":") ? `[${options.host}]` : options.host}:${listener.port}`;
  election = new LeaderElection({
    client: registry.client,
    controllerId: id,
    address: url,
    ttlSeconds: options.leaseTtlSeconds,
    logger,
    onElected(term, signal) {
      plane.events.publish({ type: EventType.LEADER_ELECTED, message: `${id} leads (term ${term})` });
      startReconciling(plane, id, term, signal, logger, metrics);
    },
  });
  election.start();
  logger.info("controller listening", { url, controller: id });
  return {
    id,
    url,
    port: listener.port,
    election,
    async close() {
      await election.close();
      await listener.close();
      await plane.close();
      stopCollecting();
    },
  };
}
