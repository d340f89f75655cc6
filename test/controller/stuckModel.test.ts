import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { create, toJsonString } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelRecordSchema } from "../../src/gen/smmf/v1/model_pb.js";
import { api, getModel, startBareWorker, startControllerProc, testSource, waitSettled, type BareWorker, type ControllerProc } from "../helpers/controlCluster.js";
import { killAll, waitFor } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";

// One model stuck on a remote call does not hold up the others: model A's source is an http(s) URL on a
// loopback server that answers the headers and never sends the body, so the worker's download (and with it
// the controller's memory estimate for A) hangs; model B, started after A, must become ready meanwhile.
let etcd: TestEtcd;
let worker: BareWorker;
let controller: ControllerProc;
let files: Server;
let base: string;
const sockets = new Set<Socket>();
let requests = 0;

beforeAll(async () => {
  files = createServer((_req, res) => {
    requests++;
    // A GGUF file of 64 MiB is on its way... and never comes.
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(64 << 20) });
    res.flushHeaders();
  });
  files.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((r) => files.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(files.address() as AddressInfo).port}/models`;
  etcd = await startEtcd();
  // The operator lets this worker download from 127.0.0.1 (a private address).
  [worker, controller] = await Promise.all([startBareWorker(etcd, "st-w", { sourceHosts: ["127.0.0.1"], sourceAllowPrivate: true }), startControllerProc(etcd, "st-controller")]);
  await waitFor("the worker registered", async () => (await api(controller.url, "GET", "/api/v1/workers")).body.data?.length === 1, 15_000);
}, 120_000);

afterAll(async () => {
  await killAll(controller?.proc, worker?.proc);
  for (const socket of sockets) socket.destroy();
  files?.close();
  await etcd?.close();
});

describe("controller: reconciliation per model", () => {
  it("makes model B ready while model A's download hangs, scales B meanwhile, and stops A at once", async () => {
    // A's desired state goes straight into etcd, as a model started while its file server still answered:
    // StartModel itself would first wait (up to 10 minutes) for the worker to download the file.
    const record = create(ModelRecordSchema, {
      version: 1,
      spec: { name: "st-a", engine: "llama.cpp", source: `${base}/a.gguf`, replicas: 1, llamaCpp: { contextSize: 256, sequences: 1, chatTemplate: "auto" } },
      generation: 1n,
      createdAt: timestampNow(),
      updatedAt: timestampNow(),
    });
    await etcd.etcdctl("put", "/smmf/v1/models/st-a", toJsonString(ModelRecordSchema, record));
    // The controller asks the worker for A's memory; the worker starts the download, which hangs.
    await waitFor("the worker's download of A to begin", () => requests === 1 && sockets.size === 1, 20_000, 20);

    const started = performance.now();
    const b = await api(controller.url, "POST", "/api/v1/models", { name: "st-b", source: testSource(), replicas: 1, llamaCpp: { contextSize: 256, sequences: 1 } });
    expect(b.status, JSON.stringify(b.body)).toBe(201);
    await waitSettled(controller.url, "st-b", 1, 20_000);
    const readyMs = performance.now() - started;
    // A is still stuck: its download still open, no instance of it.
    expect(sockets.size).toBe(1);
    expect((await getModel(controller.url, "st-a"))?.instances ?? []).toEqual([]);

    const scaledAt = performance.now();
    const scaled = await api(controller.url, "POST", "/api/v1/models/st-b/scale", { replicas: 2 });
    expect(scaled.status, JSON.stringify(scaled.body)).toBe(200);
    await waitSettled(controller.url, "st-b", 2, 20_000);
    const scaledMs = performance.now() - scaledAt;
    expect(sockets.size).toBe(1);

    // Stopping A does not wait for its download: the record goes, and so does its status.
    const stopped = await api(controller.url, "DELETE", "/api/v1/models/st-a");
    expect(stopped.status, JSON.stringify(stopped.body)).toBe(200);
    await waitFor("st-a to be gone from the model list", async () => (await getModel(controller.url, "st-a")) === undefined, 10_000);
    // B is unaffected.
    expect((await getModel(controller.url, "st-b"))?.readyReplicas).toBe(2);
    console.log(`while A hangs: B ready ${Math.round(readyMs)} ms after its start, scaled to 2 in ${Math.round(scaledMs)} ms`);
  }, 120_000);
});
