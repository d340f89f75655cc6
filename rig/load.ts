import http from "node:http";

/** What the client namespace's load generator sends: OpenAI completions, round-robin over `targets`. */
export interface LoadSpec {
  /** Gateway roots, e.g. ["http://10.231.0.41:8000"]; request i goes to targets[i % targets.length]. */
  targets: string[];
  model: string;
  /** How many requests in all; with durationMs, whichever comes first. One of them is needed. */
  requests?: number;
  durationMs?: number;
  /** Requests open at once (each of them a stream when `stream`). */
  concurrency: number;
  maxTokens: number;
  stream: boolean;
  /** Sent as `Authorization: Bearer`. */
  apiKey?: string;
  /** A request that has not ended by then counts as failed (default 120 s). */
  timeoutMs?: number;
  /** The prompt; `{i}` is replaced by the request's number, so that prompts differ. */
  prompt?: string;
}

/** One request as the client saw it. */
export interface RequestRecord {
  i: number;
  target: string;
  /** The instance that began the answer (x-smmf-instance), "" when none. */
  instance: string;
  status: number;
  ok: boolean;
  /** Why it failed: a transport error, an HTTP status, an error event in the stream, a missing end. */
  error?: string;
  /** Date.now() at the start and the end. */
  start: number;
  end: number;
  /** Milliseconds to the first content chunk (streams). */
  ttftMs?: number;
  completionTokens?: number;
  finishReason?: string;
  /** Content chunks received (streams). */
  chunks: number;
}

export interface LoadProgress {
  done: number;
  failed: number;
  inFlight: number;
}

/** Percentile (nearest rank) of a sorted list; NaN when empty. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export interface LoadSummary {
  requests: number;
  ok: number;
  failed: number;
  /** Seconds from the first start to the last end. */
  seconds: number;
  requestsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  /** Requests begun by each instance (x-smmf-instance), and their latencies. */
  byInstance: Record<string, { requests: number; p50Ms: number; p99Ms: number }>;
  errors: string[];
}

/** Figures over the records (latencies of successful requests). */
export function summarize(records: RequestRecord[]): LoadSummary {
  const ok = records.filter((r) => r.ok);
  const latencies = ok.map((r) => r.end - r.start).sort((a, b) => a - b);
  const first = Math.min(...records.map((r) => r.start));
  const last = Math.max(...records.map((r) => r.end));
  const seconds = records.length > 0 ? (last - first) / 1000 : 0;
  const byInstance: LoadSummary["byInstance"] = {};
  const instances = [...new Set(ok.map((r) => r.instance))].sort();
  for (const instance of instances) {
    const mine = ok.filter((r) => r.instance === instance).map((r) => r.end - r.start).sort((a, b) => a - b);
    byInstance[instance] = { requests: mine.length, p50Ms: percentile(mine, 50), p99Ms: percentile(mine, 99) };
  }
  return {
    requests: records.length,
    ok: ok.length,
    failed: records.length - ok.length,
    seconds,
    requestsPerSecond: seconds > 0 ? ok.length / seconds : 0,
    p50Ms: percentile(latencies, 50),
    p90Ms: percentile(latencies, 90),
    p99Ms: percentile(latencies, 99),
    byInstance,
    errors: records.filter((r) => !r.ok).map((r) => `#${r.i} via ${r.target} (${r.instance || "no instance"}): ${r.error}`),
  };
}

/** One completion request; never rejects (a failure is a record with ok: false). */
function oneRequest(spec: LoadSpec, i: number, agents: Map<string, http.Agent>): Promise<RequestRecord> {
  const target = spec.targets[i % spec.targets.length];
  const url = new URL("/v1/completions", target);
  const body = JSON.stringify({
    model: spec.model,
    prompt: (spec.prompt ?? "Once upon a time, story {i}:").replace("{i}", String(i)),
    max_tokens: spec.maxTokens,
    temperature: 1,
    stream: spec.stream,
    ...(spec.stream ? { stream_options: { include_usage: true } } : {}),
  });
  const record: RequestRecord = { i, target, instance: "", status: 0, ok: false, start: Date.now(), end: 0, chunks: 0 };
  return new Promise((resolve) => {
    let settled = false;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      record.end = Date.now();
      if (error) record.error = error;
      record.ok = error === undefined;
      resolve(record);
    };
    const req = http.request(
      url,
      {
        method: "POST",
        agent: agents.get(target),
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...(spec.apiKey ? { authorization: `Bearer ${spec.apiKey}` } : {}) },
      },
      (res) => {
        record.status = res.statusCode ?? 0;
        record.instance = String(res.headers["x-smmf-instance"] ?? "");
        res.setEncoding("utf8");
        let text = "";
        let sawDone = false;
        let streamError: string | undefined;
        let pending = "";
        res.on("data", (chunk: string) => {
          if (!spec.stream || record.status !== 200) {
            text += chunk;
            return;
          }
          pending += chunk;
          const events = pending.split("\n\n");
          pending = events.pop() ?? "";
          for (const event of events) {
            for (const line of event.split("\n")) {
              if (!line.startsWith("data:")) continue;
              const data = line.slice(5).trim();
              if (data === "[DONE]") {
                sawDone = true;
                continue;
              }
              try {
                const parsed = JSON.parse(data);
                if (parsed.error) streamError = `error event: ${JSON.stringify(parsed.error).slice(0, 300)}`;
                const choice = parsed.choices?.[0];
                if (choice) {
                  if (choice.finish_reason) record.finishReason = choice.finish_reason;
                  else if (typeof choice.text === "string") {
                    if (record.chunks === 0) record.ttftMs = Date.now() - record.start;
                    record.chunks++;
                  }
                }
                if (parsed.usage) record.completionTokens = parsed.usage.completion_tokens;
              } catch {
                streamError = `unreadable event: ${data.slice(0, 200)}`;
              }
            }
          }
        });
        res.on("error", (err) => finish(`response failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
        res.on("end", () => {
          if (record.status !== 200) return finish(`HTTP ${record.status}: ${text.slice(0, 300)}`);
          if (spec.stream) {
            if (streamError) return finish(streamError);
            if (!sawDone) return finish("the stream ended without data: [DONE]");
            if (!record.finishReason) return finish("the stream ended without a finish_reason");
            return finish();
          }
          try {
            const parsed = JSON.parse(text);
            record.finishReason = parsed.choices?.[0]?.finish_reason;
            record.completionTokens = parsed.usage?.completion_tokens;
            if (!record.finishReason) return finish(`no finish_reason in ${text.slice(0, 200)}`);
            finish();
          } catch {
            finish(`unreadable answer: ${text.slice(0, 200)}`);
          }
        });
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error("timeout"));
      finish(`no end within ${spec.timeoutMs ?? 120_000} ms`);
    }, spec.timeoutMs ?? 120_000);
    req.on("error", (err) => finish(`request failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    req.end(body);
  });
}

/**
 * Runs the load: `concurrency` lanes, each sending one request after another until `requests` are sent or
 * `durationMs` has passed or `stop` aborts (requests in flight then finish). Calls onProgress after every request.
 */
export async function runLoad(spec: LoadSpec, onProgress: (p: LoadProgress, record: RequestRecord) => void, stop: AbortSignal): Promise<RequestRecord[]> {
  if (spec.requests === undefined && spec.durationMs === undefined) throw new Error("a load needs `requests` or `durationMs`");
  const agents = new Map(spec.targets.map((t) => [t, new http.Agent({ keepAlive: true, maxSockets: Infinity })]));
  const records: RequestRecord[] = [];
  const until = spec.durationMs === undefined ? Infinity : Date.now() + spec.durationMs;
  let next = 0;
  let inFlight = 0;
  let failed = 0;
  const lane = async () => {
    for (;;) {
      if (stop.aborted || Date.now() >= until) return;
      const i = next++;
      if (spec.requests !== undefined && i >= spec.requests) return;
      inFlight++;
      const record = await oneRequest(spec, i, agents);
      inFlight--;
      records.push(record);
      if (!record.ok) failed++;
      onProgress({ done: records.length, failed, inFlight }, record);
    }
  };
  try {
    await Promise.all(Array.from({ length: spec.concurrency }, lane));
  } finally {
    for (const agent of agents.values()) agent.destroy();
  }
  return records.sort((a, b) => a.i - b.i);
}
