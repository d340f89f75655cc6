import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/config/loadConfig.js";
import type { SmmfConfig } from "../../src/config/SmmfConfig.js";
import { toSmmfError } from "../../src/errors/SmmfError.js";
import { WorkerService } from "../../src/gen/smmf/v1/worker_pb.js";
import { createLogger } from "../../src/telemetry/createLogger.js";
import { cachePathOf } from "../../src/worker/fetchModelFile.js";
import { startWorker, type RunningWorker } from "../../src/worker/startWorker.js";
import { workerSettingsOf } from "../../src/worker/workerSettingsOf.js";
import { testModelPath } from "../helpers/testModel.js";

// Real workers (gRPC over HTTP/2 on loopback, settings from a configuration through workerSettingsOf, as
// `smmf worker` and `smmf serve` build them) load model sources from a real HTTP server on 127.0.0.1 that
// serves the test model's bytes under several names. The operator allows that host and private addresses.

const MIB = 1024 * 1024;
const MODEL = readFileSync(testModelPath());

interface FileServer {
  server: Server;
  port: number;
  sockets: Set<Socket>;
  /** Requests seen, by path. */
  paths: string[];
  /** Emits the path of every request as it arrives. */
  requests: NodeJS.EventEmitter;
  url(path: string): string;
}

/**
 * /m/<name>.gguf: the test model (any name, each a separate URL); /huge.gguf: a head announcing 4 MiB, and
 * no body; /stuck.gguf: a head announcing the model's length, then nothing ever.
 */
async function fileServer(): Promise<FileServer> {
  const sockets = new Set<Socket>();
  const paths: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? "";
    paths.push(path);
    server.emit("request-path", path);
    if (/^\/m\/[a-z0-9-]+\.gguf$/.test(path)) {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(MODEL.length) });
      return void res.end(MODEL);
    }
    if (path === "/huge.gguf") {
      res.writeHead(200, { "content-length": String(4 * MIB) });
      return void res.flushHeaders();
    }
    if (path === "/stuck.gguf") {
      res.writeHead(200, { "content-length": String(MODEL.length) });
      return void res.flushHeaders();
    }
    res.writeHead(404).end();
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  return { server, port, sockets, paths, requests: server, url: (path) => `http://127.0.0.1:${port}${path}` };
}

interface QuotaWorker {
  running: RunningWorker;
  client: Client<typeof WorkerService>;
  dataDir: string;
  /** The download cache folder's files. */
  cacheFiles(): string[];
  close(): Promise<void>;
}

async function startQuotaWorker(overrides: Partial<SmmfConfig>): Promise<QuotaWorker> {
  const dataDir = mkdtempSync(join(tmpdir(), "smmf-quotas-"));
  const config: SmmfConfig = {
    ...DEFAULTS,
    workerHost: "127.0.0.1",
    workerPort: 0,
    gpu: "off",
    threads: 1,
    logLevel: "warn",
    dataDir,
    modelDir: dirname(testModelPath()),
    models: [],
    sourceHosts: ["127.0.0.1"],
    sourceAllowPrivate: true,
    ...overrides,
  };
  const running = await startWorker({ ...workerSettingsOf(config), logger: createLogger("warn", "test") });
  const client = createClient(WorkerService, createGrpcTransport({ baseUrl: running.address }));
  const cacheDir = join(dataDir, "model-cache");
  return {
    running,
    client,
    dataDir,
    cacheFiles: () => {
      try {
        return readdirSync(cacheDir).sort();
      } catch {
        return [];
      }
    },
    close: async () => {
      await running.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The SMMF error a call fails with. */
async function failure(call: Promise<unknown>) {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "the call should fail").toBeDefined();
  return toSmmfError(err);
}

let files: FileServer;

beforeAll(async () => {
  files = await fileServer();
});

afterAll(async () => {
  for (const socket of files?.sockets ?? []) socket.destroy();
  if (files?.server.listening) await new Promise<void>((r) => files.server.close(() => r()));
});

describe("the download cache's bound (downloadCacheMb)", () => {
  let w: QuotaWorker;
  // Room for two copies of the model (1.13 MiB each), not three.
  beforeAll(async () => {
    w = await startQuotaWorker({ downloadCacheMb: 3 });
  });
  afterAll(() => w?.close());

  it("evicts a downloaded file no instance uses to make room, and keeps the one in use", async () => {
    const url = (id: string) => files.url(`/m/${id}.gguf`);
    const fileOf = (id: string) => basename(cachePathOf(url(id), join(w.dataDir, "model-cache")));
    const load = (id: string) => w.client.loadInstance({ spec: { model: `q-${id}`, instanceId: `q-${id}`, engine: "llama.cpp", source: url(id) } });
    await load("kept");
    await load("dropped");
    await w.client.unloadInstance({ instanceId: "q-dropped" });
    // Within the bound: both files stay; the unused one is a candidate now.
    expect(w.cacheFiles()).toEqual([fileOf("kept"), fileOf("dropped")].sort());
    await load("third");
    // The one in use stays although it was used least recently (loaded first, never let go).
    expect(w.cacheFiles()).toEqual([fileOf("kept"), fileOf("third")].sort());
    const bytes = w.cacheFiles().reduce((n, f) => n + statSync(join(w.dataDir, "model-cache", f)).size, 0);
    expect(bytes).toBeLessThanOrEqual(3 * MIB);
    expect((await w.client.listInstances({})).instances.map((i) => i.instanceId).sort()).toEqual(["q-kept", "q-third"]);
    // A file kept is used again without a download; an evicted one is downloaded again.
    const requests = files.paths.length;
    await w.client.unloadInstance({ instanceId: "q-third" });
    await load("third");
    expect(files.paths.length).toBe(requests);
    await w.client.unloadInstance({ instanceId: "q-third" });
    await load("dropped");
    expect(files.paths.slice(requests)).toEqual(["/m/dropped.gguf"]);
    expect(w.cacheFiles()).toEqual([fileOf("kept"), fileOf("dropped")].sort());
    await w.client.unloadInstance({ instanceId: "q-dropped" });
  });

  it("refuses a download larger than the whole cache by its Content-Length, before its body, and keeps nothing of it", async () => {
    const before = w.cacheFiles();
    const err = await failure(w.client.loadInstance({ spec: { model: "q-huge", engine: "llama.cpp", source: files.url("/huge.gguf") } }));
    expect(err.code).toBe("failed_precondition");
    expect(err.param).toBe("source");
    expect(err.message).toBe(`worker ${w.running.worker.id} cannot download ${files.url("/huge.gguf")}: the file (${4 * MIB} bytes) is larger than the worker's whole download cache of ${3 * MIB} bytes`);
    expect(files.paths).toContain("/huge.gguf");
    expect(w.cacheFiles()).toEqual(before);
    expect((await w.client.listInstances({})).instances.map((i) => i.model)).not.toContain("q-huge");
  });
});

describe("most instances per worker (maxInstancesPerWorker)", () => {
  let w: QuotaWorker;
  beforeAll(async () => {
    w = await startQuotaWorker({ maxInstancesPerWorker: 3 });
  });
  afterAll(() => w?.close());

  // An upstream (proxy) instance: its memory estimate is 0 bytes, and it still takes a slot. Nothing connects to it.
  const proxy = (id: string) => w.client.loadInstance({ spec: { model: "q-proxy", instanceId: id, engine: "vllm", proxy: { baseUrl: "http://127.0.0.1:9/v1" } } });

  it("refuses the (max+1)th instance with resource_exhausted, upstream instances counted; one unloaded makes room", async () => {
    await w.client.loadInstance({ spec: { model: "q-local", instanceId: "q-local", engine: "llama.cpp", source: "stories260K.gguf" } });
    await proxy("q-proxy-1");
    await proxy("q-proxy-2");
    expect((await w.client.listInstances({})).instances).toHaveLength(3);
    for (const call of [
      () => proxy("q-proxy-3"),
      () => w.client.loadInstance({ spec: { model: "q-local", instanceId: "q-local-2", engine: "llama.cpp", source: "stories260K.gguf" } }),
    ]) {
      const err = await failure(call());
      expect(err.code).toBe("resource_exhausted");
      expect(err.message).toMatch(new RegExp(`^worker ${w.running.worker.id} hosts 3 instances, its most \\(maxInstancesPerWorker 3\\)`));
    }
    expect((await w.client.listInstances({})).instances).toHaveLength(3);
    await w.client.unloadInstance({ instanceId: "q-proxy-1" });
    await proxy("q-proxy-3");
    expect((await w.client.listInstances({})).instances.map((i) => i.instanceId).sort()).toEqual(["q-local", "q-proxy-2", "q-proxy-3"]);
  });
});

describe("a stalled download", () => {
  let w: QuotaWorker;
  beforeAll(async () => {
    w = await startQuotaWorker({ downloadTimeoutMs: 3_000, maxInstancesPerWorker: 2 });
  });
  afterAll(() => w?.close());

  it("blocks no other load, holds its slot meanwhile, and fails after downloadTimeoutMs with a clear error", async () => {
    const arrived = new Promise<void>((resolveArrived) => {
      const onPath = (path: string) => {
        if (path !== "/stuck.gguf") return;
        files.requests.off("request-path", onPath);
        resolveArrived();
      };
      files.requests.on("request-path", onPath);
    });
    const started = Date.now();
    let settled = false;
    const stuck = w.client.loadInstance({ spec: { model: "q-stuck", engine: "llama.cpp", source: files.url("/stuck.gguf") } }).finally(() => (settled = true));
    const stuckError = failure(stuck);
    await arrived; // the server has the request and will never send the body
    const local = await w.client.loadInstance({ spec: { model: "q-local", instanceId: "q-local", engine: "llama.cpp", source: "stories260K.gguf" } });
    expect(local.instance?.instanceId).toBe("q-local");
    expect(settled, "the stuck load is still waiting for its body").toBe(false);
    // The stuck load holds its slot: with 2 at most, a third is refused while it waits.
    const full = await failure(w.client.loadInstance({ spec: { model: "q-proxy", engine: "vllm", proxy: { baseUrl: "http://127.0.0.1:9/v1" } } }));
    expect(full.code).toBe("resource_exhausted");
    expect(settled).toBe(false);

    const err = await stuckError;
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_900);
    expect(err.code).toBe("failed_precondition");
    expect(err.message).toBe(`worker ${w.running.worker.id} cannot download ${files.url("/stuck.gguf")}: no complete file within 3000 ms`);
    // Nothing of it is left (no temporary file), and its slot is free again.
    expect(w.cacheFiles()).toEqual([]);
    const list = await w.client.listInstances({});
    expect(list.instances.map((i) => i.instanceId)).toEqual(["q-local"]);
    await w.client.loadInstance({ spec: { model: "q-proxy", engine: "vllm", proxy: { baseUrl: "http://127.0.0.1:9/v1" } } });
  });
});
