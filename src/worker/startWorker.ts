import { DEFAULT_STREAM_INTERVAL_MS } from "./streamInterval.js";
import { InferenceService } from "../gen/smmf/v1/inference_pb.js";
import type { ListenerSettings } from "../net/listenerSettingsOf.js";
import { WorkerService } from "../gen/smmf/v1/worker_pb.js";
import type { EngineDefaults } from "../engines/loadEngine.js";
import { startServer } from "../net/startServer.js";
import type { Registry } from "../registry/Registry.js";
import type { Logger } from "../telemetry/createLogger.js";
import { disabledTelemetry, type Telemetry } from "../telemetry/Telemetry.js";
import { createWorkerInferenceService, type WorkerInference } from "./createWorkerInferenceService.js";
import { createWorkerService } from "./createWorkerService.js";
import { Worker, type SourcePolicy } from "./Worker.js";

export interface WorkerServerOptions {
  id?: string;
  host: string;
  port: number;
  /** Address gateways use to reach this worker; default http://host:port. */
  advertiseAddress?: string;
  registry?: Registry;
  engineDefaults?: EngineDefaults;
  /** Labels the controller's placement matches against. */
  labels?: Record<string, string>;
  /** Memory offered to model instances, in bytes; default the machine's. */
  maxMemoryBytes?: number;
  /** Folder relative model sources are found in. */
  modelDir?: string;
  /** Folder GGUF files downloaded from http(s) sources are kept in. */
  downloadDir?: string;
  /** Bound of the download folder, in bytes: unused files are evicted least recently used first; default none. */
  downloadCacheBytes?: number;
  /** Most instances hosted at once (upstream ones included); default 256. */
  maxInstances?: number;
  /** Which model sources the worker accepts; default: files in the model folder only, no http(s) sources. */
  sourcePolicy?: SourcePolicy;
  /** Longest an instance drained by the controller may take to finish its requests (ms). */
  drainGraceMs?: number;
  /** Metrics and traces; default: metrics only, nothing per request. */
  telemetry?: Telemetry;
  /** Tokens produced within this many milliseconds of the last message go out together (0: every token at once). */
  streamIntervalMs?: number;
  /** Every RPC must present this cluster credential; none: the RPCs are open (loopback development). */
  clusterSecret?: string;
  /** Listener limits, and TLS (mTLS with a CA: callers need a client certificate whose role allows the RPC). */
  listener?: ListenerSettings;
  logger: Logger;
}

export interface RunningWorker {
  readonly worker: Worker;
  readonly port: number;
  readonly address: string;
  /** Its InferenceService, for a gateway in the same process to call without gRPC (smmf serve). */
  readonly inference: WorkerInference;
  /**
   * Graceful stop: marks the instances draining, lets requests in flight finish (at most `graceMs`),
   * then closes the listener and unloads every instance.
   */
  drain(graceMs: number): Promise<void>;
  close(graceMs?: number): Promise<void>;
}

/** After marking instances draining, how long to keep accepting requests that were already on their way. */
const DRAIN_SETTLE_MS = 300;

/** Starts a worker: InferenceService and WorkerService over gRPC (HTTP/2), Connect and gRPC-Web. */
export async function startWorker(options: WorkerServerOptions): Promise<RunningWorker> {
  const worker = new Worker({
    id: options.id,
    registry: options.registry,
    engineDefaults: options.engineDefaults,
    logger: options.logger,
    labels: options.labels,
    maxMemoryBytes: options.maxMemoryBytes,
    modelDir: options.modelDir,
    downloadDir: options.downloadDir,
    downloadCacheBytes: options.downloadCacheBytes,
    maxInstances: options.maxInstances,
    sourcePolicy: options.sourcePolicy,
    drainGraceMs: options.drainGraceMs,
  });
  const telemetry = options.telemetry ?? disabledTelemetry();
  const { metrics } = telemetry;
  const stopInFlight = metrics.onCollect(() => {
    metrics.workerInFlight.reset();
    for (const i of worker.list()) metrics.workerInFlight.set({ model: i.model, instance: i.instanceId, engine: i.engine }, i.inFlight);
  });
  // Series of instances this worker no longer hosts are dropped at the next scrape.
  const stopTracking = metrics.trackInstances(() => worker.list().map((i) => i.instanceId));
  const stopCollecting = () => {
    stopInFlight();
    stopTracking();
  };
  // Set when the worker drains to stop: /readyz answers 503 from then on.
  let draining = false;
  const inference = createWorkerInferenceService(worker, options.logger, options.streamIntervalMs ?? DEFAULT_STREAM_INTERVAL_MS, telemetry);
  const listener = await startServer({
    host: options.host,
    port: options.port,
    clusterSecret: options.clusterSecret,
    // Gateways send every request to a worker on one connection: room for all of them.
    limits: { ...options.listener?.limits, maxConcurrentStreams: Math.max(4096, options.listener?.limits.maxConcurrentStreams ?? 0) },
    tls: options.listener?.tls,
    grpcGenerate: inference,
    // gRPC health: serving until it drains to stop (as /readyz).
    serving: () => !draining,
    rest(req, res) {
      // GET /metrics (Prometheus), /healthz and /readyz beside the gRPC services.
      void (async () => {
        const path = (req.url ?? "/").split("?")[0];
        if (path === "/metrics") {
          const text = await metrics.render();
          res.writeHead(200, { "content-type": metrics.contentType });
          return void res.end(text);
        }
        // /healthz: the process runs. /readyz: it takes work (503 once it drains to stop).
        if (path === "/healthz" || path === "/readyz") {
          const ready = path === "/healthz" || !draining;
          res.writeHead(ready ? 200 : 503, { "content-type": "application/json" });
          return void res.end(JSON.stringify({ status: ready ? "ok" : "draining", worker: worker.id }));
        }
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `Unknown route: ${path}`, type: "not_found_error", param: null, code: "not_found" } }));
      })();
    },
    routes(r) {
      r.service(InferenceService, inference);
      r.service(WorkerService, createWorkerService(worker, options.logger));
    },
  });
  const host = options.host === "0.0.0.0" || options.host === "::" ? "127.0.0.1" : options.host;
  const address = options.advertiseAddress || `${options.listener?.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${listener.port}`;
  worker.setAddress(address);
  options.logger.info("worker listening", { worker: worker.id, address });
  return {
    worker,
    port: listener.port,
    address,
    inference,
    async drain(graceMs) {
      draining = true;
      const deadline = Date.now() + graceMs;
      await worker.drain().catch((err: unknown) => options.logger.warn("could not mark instances draining", { error: String(err) }));
      await new Promise((r) => setTimeout(r, Math.min(DRAIN_SETTLE_MS, graceMs)));
      while (worker.inFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await listener.close(Math.max(0, deadline - Date.now()));
      await worker.close();
      stopCollecting();
    },
    async close(graceMs = 0) {
      await listener.close(graceMs);
      await worker.close();
      stopCollecting();
    },
  };
}
