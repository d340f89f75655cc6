import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import { TrafficWindow } from "./TrafficWindow.js";
import { FastCounter } from "./FastCounter.js";
import { FastHistogram } from "./FastHistogram.js";
import type { FastMetric } from "./FastMetric.js";

/** Latency buckets (seconds) from 5 ms to 2 min: request durations and times to first token. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Inter-token latency buckets (seconds): 0.5 ms to 1 s. */
const TOKEN_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** Something whose numbers are read at scrape time (a registry, a router). */
export type Collector = () => void;

/**
 * The Prometheus metrics of one process (gateway, worker and controller parts; the embedded mode has all
 * three), named by Prometheus conventions: `smmf_` prefix, base units, `_total` counters. Label values are
 * bounded: model names that exist, instance ids, engines, endpoints, status codes — never prompt text or
 * request ids. Process metrics (CPU, memory, event loop, GC) come from prom-client's defaults. The metrics
 * updated on every request are `FastCounter`s and `FastHistogram`s: label values in label order, updates
 * that allocate nothing; their exposition is prom-client's.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly collectors: Collector[] = [];
  private readonly instanceSources: (() => Iterable<string>)[] = [];

  // gateway
  /** The last ten minutes, second by second, for the web console's charts (`GET /api/v1/traffic`). */
  readonly traffic = new TrafficWindow(600);
  readonly requests = new FastCounter({ name: "smmf_gateway_requests_total", help: "Requests answered by the gateway, by endpoint, model and HTTP status.", labelNames: ["endpoint", "model", "status"], registers: [this.registry] });
  readonly requestDuration = new FastHistogram({ name: "smmf_gateway_request_duration_seconds", help: "End-to-end request latency at the gateway.", labelNames: ["endpoint", "model"], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly timeToFirstToken = new FastHistogram({ name: "smmf_gateway_time_to_first_token_seconds", help: "Time from a generation request's arrival to its first token.", labelNames: ["model"], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly interTokenLatency = new FastHistogram({ name: "smmf_gateway_inter_token_latency_seconds", help: "Mean time between tokens after the first, one observation per request.", labelNames: ["model"], buckets: TOKEN_BUCKETS, registers: [this.registry] });
  readonly promptTokens = new FastCounter({ name: "smmf_gateway_prompt_tokens_total", help: "Prompt (input) tokens of answered requests.", labelNames: ["model"], registers: [this.registry] });
  readonly cachedPromptTokens = new FastCounter({ name: "smmf_gateway_cached_prompt_tokens_total", help: "Prompt tokens of answered requests that instances took from their cache instead of evaluating them (part of the prompt tokens).", labelNames: ["model"], registers: [this.registry] });
  readonly completionTokens = new FastCounter({ name: "smmf_gateway_completion_tokens_total", help: "Completion (output) tokens sent to clients.", labelNames: ["model"], registers: [this.registry] });
  readonly inFlight = new Gauge({ name: "smmf_gateway_requests_in_flight", help: "Requests running on instances, from this gateway.", labelNames: ["model"], registers: [this.registry] });
  readonly queued = new Gauge({ name: "smmf_gateway_requests_queued", help: "Requests waiting for a free instance.", labelNames: ["model"], registers: [this.registry] });
  readonly retries = new Counter({ name: "smmf_gateway_retries_total", help: "Requests sent again to another instance before their first token.", labelNames: ["model"], registers: [this.registry] });
  readonly failovers = new Counter({ name: "smmf_gateway_failovers_total", help: "Streams continued on another instance after their first token.", labelNames: ["model"], registers: [this.registry] });
  readonly ejections = new Counter({ name: "smmf_gateway_ejections_total", help: "Instances taken out of routing for failing.", labelNames: ["model", "instance"], registers: [this.registry] });
  readonly prefixRouting = new FastCounter({ name: "smmf_gateway_prefix_routing_total", help: "Generations routed under the prefix policy, by outcome: hit (to the instance holding their prefix), miss (none remembered), overflow (its instance was full or too busy).", labelNames: ["model", "outcome"], registers: [this.registry] });
  readonly keyRequests = new FastCounter({ name: "smmf_key_requests_total", help: "Inference requests per API key (by its name): admitted, or refused by the key's limits.", labelNames: ["key", "outcome"], registers: [this.registry] });
  readonly keyTokens = new FastCounter({ name: "smmf_key_tokens_total", help: "Tokens of answered requests per API key (by its name), prompt and completion.", labelNames: ["key", "type"], registers: [this.registry] });
  readonly fleetSize = new Gauge({ name: "smmf_gateway_fleet_size", help: "Gateways this gateway counts, itself included (each enforces a 1/N share of every key's limits).", registers: [this.registry] });
  readonly feedback = new Counter({ name: "smmf_feedback_total", help: "User feedback on requests, by model and sign of the score.", labelNames: ["model", "sentiment"], registers: [this.registry] });
  readonly requestLogDropped = new Counter({ name: "smmf_request_log_dropped_total", help: "Request-log records not written (the log failed or its queue was full).", registers: [this.registry] });

  // telemetry thread
  readonly telemetryDropped = new Counter({ name: "smmf_telemetry_dropped_total", help: "Spans and request-log entries lost on their way to the telemetry thread or in it, by record and reason (encode, queue_full, thread_down, write).", labelNames: ["record", "reason"], registers: [this.registry] });
  readonly telemetryReplaced = new Counter({ name: "smmf_telemetry_replaced_total", help: "Records kept in a reduced form because they could not be encoded as they were, by record and reason (unserializable, too_large).", labelNames: ["record", "reason"], registers: [this.registry] });
  readonly telemetryRestarts = new Counter({ name: "smmf_telemetry_restarts_total", help: "Times the telemetry thread was started again after it died or could not start.", registers: [this.registry] });

  // registry and instances
  readonly instances = new Gauge({ name: "smmf_instances", help: "Model instances known from the registry, by model, engine and state.", labelNames: ["model", "engine", "state"], registers: [this.registry] });
  readonly watchEvents = new Counter({ name: "smmf_registry_watch_events_total", help: "etcd watch events received, by prefix.", labelNames: ["prefix"], registers: [this.registry] });
  readonly relists = new Counter({ name: "smmf_registry_relists_total", help: "Full listings of an etcd prefix (at start, after compaction or reconnection).", labelNames: ["prefix"], registers: [this.registry] });
  readonly etcdUp = new Gauge({ name: "smmf_etcd_up", help: "1 while the registry watches etcd, 0 while it cannot reach it.", registers: [this.registry] });

  // worker
  readonly generations = new FastCounter({ name: "smmf_worker_generations_total", help: "Generations run by the worker's instances, by finish reason.", labelNames: ["model", "instance", "engine", "finish_reason"], registers: [this.registry] });
  readonly generationDuration = new FastHistogram({ name: "smmf_worker_generation_duration_seconds", help: "Time a generation took on the worker.", labelNames: ["model", "engine"], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly workerTokens = new FastCounter({ name: "smmf_worker_tokens_total", help: "Tokens processed by the worker's instances.", labelNames: ["model", "engine", "type"], registers: [this.registry] });
  readonly workerInFlight = new Gauge({ name: "smmf_worker_in_flight", help: "Generations running on each instance.", labelNames: ["model", "instance", "engine"], registers: [this.registry] });

  // controller
  readonly leader = new Gauge({ name: "smmf_controller_leader", help: "1 while this controller leads.", registers: [this.registry] });
  readonly reconcilePasses = new Counter({ name: "smmf_controller_reconcile_passes_total", help: "Passes of the control loop.", registers: [this.registry] });
  readonly controllerActions = new Counter({ name: "smmf_controller_actions_total", help: "Loads and drains the controller ordered, and failed loads.", labelNames: ["action"], registers: [this.registry] });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Runs `collector` before every scrape (it sets gauges from live state). */
  onCollect(collector: Collector): () => void {
    this.collectors.push(collector);
    return () => {
      const i = this.collectors.indexOf(collector);
      if (i >= 0) this.collectors.splice(i, 1);
    };
  }

  /**
   * Names where the instances that exist can be read (a registry, a worker's own list). Once one is given, at
   * every scrape the series of per-instance metrics (`instance` label) whose instance none of them lists are
   * dropped: an unloaded instance leaves no series behind. Without any, series are kept.
   */
  trackInstances(source: () => Iterable<string>): () => void {
    this.instanceSources.push(source);
    return () => {
      const i = this.instanceSources.indexOf(source);
      if (i >= 0) this.instanceSources.splice(i, 1);
    };
  }

  /** The exposition in Prometheus text format. */
  async render(): Promise<string> {
    for (const collect of this.collectors) collect();
    await this.dropGoneInstances();
    return this.registry.metrics();
  }

  /** Drops the series of instances that no source lists (see `trackInstances`). */
  private async dropGoneInstances(): Promise<void> {
    if (this.instanceSources.length === 0) return;
    const live = new Set<string>();
    for (const source of this.instanceSources) for (const id of source()) live.add(id);
    const gone = (labels: Record<string, string | number>) => labels.instance !== undefined && !live.has(String(labels.instance));
    const fast: FastMetric<unknown>[] = [this.generations];
    for (const metric of fast) metric.removeSeries(gone);
    for (const metric of [this.ejections, this.workerInFlight] as (Counter<string> | Gauge<string>)[]) {
      for (const { labels } of (await metric.get()).values) if (gone(labels as Record<string, string | number>)) metric.remove(labels as Record<string, string | number>);
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A counter that mirrors a monotonic number read elsewhere: adds what it grew by since the last scrape. */
export function mirror(counter: Counter<string>, labels: Record<string, string>): (value: number) => void {
  let last = 0;
  return (value) => {
    if (value > last) counter.inc(labels, value - last);
    last = value;
  };
}
