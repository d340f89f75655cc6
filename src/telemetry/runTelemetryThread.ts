// The telemetry thread (started by TelemetryThread, bundled by bundleThreadSource): exports spans over OTLP/HTTP and writes the request log,
// so that neither serialization, HTTP nor SQLite ever runs on the thread that serves requests.
import { setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { Logger } from "./createLogger.js";
import { RequestLog, type RequestEntry } from "./RequestLog.js";
import { ByteReader } from "./ByteReader.js";
import { readItems } from "./telemetryItems.js";
import { ITEM_ENTRY, ITEM_SPAN, type FromThread, type RecordKind, type TelemetryThreadSettings, type ToThread } from "./telemetryThreadProtocol.js";

/**
 * The thread's nice value: when the cores are busy, the threads that serve requests and run the model go
 * first (weight 1024 against 110), and the telemetry thread takes what is left. On Linux the nice value is
 * per thread (setpriority with pid 0 means this thread); elsewhere it would lower the whole process, so
 * there it is left alone.
 */
const NICE = 10;
if (process.platform === "linux") {
  try {
    setPriority(NICE);
  } catch {
    // Not allowed here: the thread runs at the process's priority.
  }
}

const port = parentPort!;
const settings = workerData as TelemetryThreadSettings;
const send = (m: FromThread) => port.postMessage(m);
const warn = (message: string) => send({ type: "warn", message });
const logger: Logger = { debug: () => undefined, info: () => undefined, warn, error: warn };

/**
 * Exports one span item; set only with an OTLP endpoint. The OpenTelemetry SDK and exporter are loaded only
 * then: a thread that only keeps the request log stays small (measured: ~150 CommonJS modules fewer).
 */
let exportSpan: ((item: ByteReader) => void) | undefined;
let processor: { forceFlush(): Promise<void>; shutdown(): Promise<void> } | undefined;
if (settings.otlpEndpoint) {
  const [{ OTLPTraceExporter }, { BatchSpanProcessor }, { resourceFromAttributes }, { decodeSpan }, { readableSpanOf }] = await Promise.all([
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/resources"),
    import("./spanCodec.js"),
    import("./readableSpanOf.js"),
  ]);
  const batch = new BatchSpanProcessor(new OTLPTraceExporter({ url: `${settings.otlpEndpoint.replace(/\/+$/, "")}/v1/traces` }), { scheduledDelayMillis: 500, maxExportBatchSize: 256, maxQueueSize: 8192 });
  const resource = resourceFromAttributes({ "service.name": settings.serviceName });
  exportSpan = (item) => batch.onEnd(readableSpanOf(decodeSpan(item), resource));
  processor = batch;
}

// Records settled since the last report (see FromThread "settled"), reported after each frame and each write.
const settled = { frames: 0, spans: 0, entries: 0 };
function reportSettled(): void {
  if (settled.frames + settled.spans + settled.entries === 0) return;
  send({ type: "settled", ...settled });
  settled.frames = settled.spans = settled.entries = 0;
}

let log: RequestLog | undefined;
if (settings.requestLog) {
  log = await RequestLog.open({
    ...settings.requestLog,
    logger,
    onDropped: (count, reason) => send({ type: "dropped", count, reason, record: "entry" }),
    onWritten: (count) => {
      settled.entries += count;
      reportSettled();
    },
  });
}

/** Handles one item of a frame; throws when it cannot be read (the item is then dropped and counted). */
function handleItem(tag: number, item: ByteReader): void {
  if (tag === ITEM_SPAN) {
    exportSpan?.(item);
    settled.spans++;
  } else if (tag === ITEM_ENTRY) {
    const entry = JSON.parse(item.string()) as RequestEntry;
    if (typeof entry !== "object" || entry === null || typeof entry.id !== "string") throw new TypeError("not a request-log entry");
    // Settled once written (onWritten) or dropped (onDropped); without a log, now.
    if (log) log.record(entry);
    else settled.entries++;
  } else {
    throw new TypeError(`unknown item tag ${tag}`);
  }
}

function itemFailed(tag: number): void {
  const record: RecordKind = tag === ITEM_SPAN ? "span" : "entry";
  send({ type: "dropped", count: 1, reason: "encode", record });
}

function answer(id: number, run: () => unknown): void {
  try {
    send({ type: "reply", id, result: run() });
  } catch (err) {
    const e = toSmmfError(err);
    send({ type: "reply", id, error: { code: e.code, message: e.message, param: e.param } });
  }
}


port.on("message", (m: ToThread) => {
  switch (m.type) {
    case "items": {
      // An item that cannot be read is dropped and counted; the others of its frame still go through.
      const read = readItems(new ByteReader(m.buffer, m.length), handleItem, itemFailed);
      const expected = m.spans + m.entries;
      if (read < expected) send({ type: "dropped", count: expected - read, reason: "encode", record: m.entries > 0 ? "entry" : "span" });
      settled.frames++;
      reportSettled();
      break;
    }
    case "call":
      answer(m.id, () => {
        if (!log) throw new SmmfError("unavailable", "the request log is off");
        if (m.method === "get") return log.get(m.args[0] as string);
        if (m.method === "query") return log.query(m.args[0] as Parameters<RequestLog["query"]>[0]);
        return log.setFeedback(m.args[0] as string, m.args[1] as Parameters<RequestLog["setFeedback"]>[1]);
      });
      break;
    case "fail":
      // A test hook: the thread fails as it would on an uncaught exception.
      setImmediate(() => {
        throw new Error(m.message);
      });
      break;
    case "close":
      log?.close();
      void (processor?.shutdown() ?? Promise.resolve())
        .catch(() => undefined)
        .then(() => {
          send({ type: "closed" });
          port.close();
        });
      break;
  }
});
