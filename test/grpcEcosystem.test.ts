// The standard gRPC services every SMMF gRPC port serves, as stock tools use them: a @grpc/grpc-js client built
// from the standard health and reflection protos (what Kubernetes' gRPC probes, grpc_health_probe and grpcurl
// speak), against the gateway and worker ports of `smmf serve`'s code in this process and a controller process.
import { dirname, resolve } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startControllerProc, type ControllerProc } from "./helpers/controlCluster.js";
import { startEtcd, type TestEtcd } from "./helpers/startEtcd.js";
import { startTestServer, type TestServer } from "./helpers/startTestServer.js";
import { projectRoot, testModelPath } from "./helpers/testModel.js";

const PROTO_DIR = resolve(projectRoot, "proto");
const definition = protoLoader.loadSync(["grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"], { includeDirs: [PROTO_DIR], keepCase: true, enums: String, defaults: true, oneofs: true });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = grpc.loadPackageDefinition(definition) as any;

type Status = "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN" | "UNKNOWN";

function healthClient(address: string): grpc.Client & Record<string, (...args: unknown[]) => unknown> {
  return new pkg.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
}

function check(address: string, service: string, metadata = new grpc.Metadata()): Promise<{ status?: Status; code?: grpc.status; details?: string }> {
  const client = healthClient(address);
  return new Promise((done) => {
    client.Check({ service }, metadata, { deadline: Date.now() + 20_000 }, (err: grpc.ServiceError | null, res?: { status: Status }) => {
      client.close();
      done(err ? { code: err.code, details: err.details } : { status: res!.status });
    });
  });
}

/** A Watch call: its messages as they come, and a way to wait for a status. */
function watch(address: string, service: string) {
  const client = healthClient(address);
  const call = client.Watch({ service }) as grpc.ClientReadableStream<{ status: Status }>;
  const seen: Status[] = [];
  const waiters: { status: Status; resolve: () => void }[] = [];
  call.on("data", (m: { status: Status }) => {
    seen.push(m.status);
    for (const w of waiters.filter((w) => w.status === m.status)) w.resolve();
  });
  call.on("error", () => undefined);
  return {
    seen,
    until: (status: Status) => (seen.includes(status) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ status, resolve }))),
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

interface ReflectionResponse {
  message_response: string;
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** Sends reflection requests on one stream and collects one response for each. */
function reflect(address: string, requests: object[], version: "v1" | "v1alpha" = "v1", metadata = new grpc.Metadata()): Promise<{ responses: ReflectionResponse[]; code?: grpc.status }> {
  const client = new pkg.grpc.reflection[version].ServerReflection(address, grpc.credentials.createInsecure());
  const call = client.ServerReflectionInfo(metadata, { deadline: Date.now() + 20_000 }) as grpc.ClientDuplexStream<object, ReflectionResponse>;
  const responses: ReflectionResponse[] = [];
  return new Promise((done) => {
    call.on("data", (r: ReflectionResponse) => responses.push(r));
    call.on("error", (err: grpc.ServiceError) => {
      client.close();
      done({ responses, code: err.code });
    });
    call.on("end", () => {
      client.close();
      done({ responses });
    });
    for (const r of requests) call.write(r);
    call.end();
  });
}

/** An RPC of a method nobody serves, through grpc-js's generic client. */
function unknownMethod(address: string, path: string): Promise<grpc.ServiceError> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((done) => {
    client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (err) => {
      client.close();
      done(err as grpc.ServiceError);
    });
  });
}

let server: TestServer;
let gateway: string;
let worker: string;

beforeAll(async () => {
  server = await startTestServer();
  gateway = `127.0.0.1:${new URL(server.url).port}`;
  worker = `127.0.0.1:${server.embedded.worker.port}`;
});
afterAll(async () => {
  await server?.close();
});

describe("grpc.health.v1.Health", () => {
  it("on the gateway: SERVING for the server and each service it serves, NOT_FOUND for a service it does not", async () => {
    expect(await check(gateway, "")).toEqual({ status: "SERVING" });
    for (const service of ["smmf.v1.InferenceService", "smmf.v1.ControllerService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]) expect(await check(gateway, service), service).toEqual({ status: "SERVING" });
    expect((await check(gateway, "smmf.v1.NoSuchService")).code).toBe(grpc.status.NOT_FOUND);
    const unknown = watch(gateway, "smmf.v1.NoSuchService");
    await unknown.until("SERVICE_UNKNOWN");
    unknown.close();
  });

  it("on a worker's port, without its cluster credential (a probe has none): SERVING, and NOT_SERVING once it drains to stop", async () => {
    expect(await check(worker, "")).toEqual({ status: "SERVING" });
    expect(await check(worker, "smmf.v1.InferenceService")).toEqual({ status: "SERVING" });
    const other = await startTestServer();
    try {
      const watcher = watch(`127.0.0.1:${other.embedded.worker.port}`, "");
      await watcher.until("SERVING");
      const drained = other.embedded.worker.drain(3_000);
      await watcher.until("NOT_SERVING");
      watcher.close();
      await drained;
    } finally {
      await other.close().catch(() => undefined);
    }
  });

  it("a gateway with no model online is NOT_SERVING; Watch says SERVING as soon as the first instance is online", async () => {
    const empty = await startTestServer({ models: [], sourceDirs: [dirname(testModelPath())] });
    const address = `127.0.0.1:${new URL(empty.url).port}`;
    try {
      expect(await check(address, "")).toEqual({ status: "NOT_SERVING" });
      const watcher = watch(address, "");
      await watcher.until("NOT_SERVING");
      const started = await fetch(`${empty.url}/api/v1/models`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "late", source: testModelPath() }) });
      expect(started.status, await started.text()).toBeLessThan(300);
      await watcher.until("SERVING");
      expect(watcher.seen).toEqual(["NOT_SERVING", "SERVING"]);
      expect(await check(address, "smmf.v1.InferenceService")).toEqual({ status: "SERVING" });
      // Closing (the drain of a stop): NOT_SERVING before the port goes away.
      const closed = empty.embedded.gateway.close(2_000);
      await watcher.until("NOT_SERVING");
      watcher.close();
      await closed;
    } finally {
      await empty.close().catch(() => undefined);
    }
  });
});

describe("gRPC server reflection", () => {
  it("lists the services of the port and describes them (v1 and v1alpha), as grpcurl list and describe do", async () => {
    for (const version of ["v1", "v1alpha"] as const) {
      const { responses, code } = await reflect(gateway, [{ list_services: "" }, { file_containing_symbol: "smmf.v1.InferenceService" }, { file_containing_symbol: "smmf.v1.InferenceService.Generate" }, { file_by_filename: "smmf/v1/controller.proto" }, { file_containing_symbol: "smmf.v1.Nothing" }], version);
      expect(code, version).toBeUndefined();
      expect(responses.length).toBe(5);
      const names = responses[0].list_services_response!.service.map((s) => s.name);
      expect(names).toEqual(expect.arrayContaining(["smmf.v1.InferenceService", "smmf.v1.ControllerService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]));
      for (const r of [responses[1], responses[2]]) {
        const files = r.file_descriptor_response!.file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
        expect(files[0].name).toBe("smmf/v1/inference.proto");
        const service = files[0].service.find((s) => s.name === "InferenceService")!;
        expect(service.method.map((m) => m.name)).toEqual(["Generate", "Embed", "CountTokens", "Rerank"]);
        const generate = service.method[0];
        expect([generate.inputType, generate.outputType, generate.clientStreaming, generate.serverStreaming]).toEqual([".smmf.v1.GenerateRequest", ".smmf.v1.GenerateResponse", true, true]);
        // Every file it imports comes with it, so a tool can describe its messages.
        for (const dependency of files[0].dependency) expect(files.map((f) => f.name), dependency).toContain(dependency);
      }
      const controller = responses[3].file_descriptor_response!.file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
      expect(controller[0].service.map((s) => s.name)).toContain("ControllerService");
      expect(responses[4].error_response).toMatchObject({ error_code: grpc.status.NOT_FOUND });
    }
  });

  it("on a worker's port it needs the cluster credential; health checking does not", async () => {
    const { code } = await reflect(worker, [{ list_services: "" }]);
    expect(code).toBe(grpc.status.UNAUTHENTICATED);
    expect(await check(worker, "")).toEqual({ status: "SERVING" });
  });
});

describe("unknown gRPC methods", () => {
  it("get a gRPC UNIMPLEMENTED status (a status the client reads, not an HTTP JSON body)", async () => {
    for (const address of [gateway, worker]) {
      for (const path of ["/smmf.v1.InferenceService/NoSuchMethod", "/no.such.Service/Call"]) {
        const err = await unknownMethod(address, path);
        expect(err.code, `${address} ${path}`).toBe(grpc.status.UNIMPLEMENTED);
        expect(err.details).toMatch(/unknown method/);
      }
    }
  });
});

describe("unknown gRPC-Web methods", () => {
  it("get grpc-status 12 in the headers of an HTTP/1.1 answer", async () => {
    const res = await fetch(`http://${gateway}/smmf.v1.InferenceService/NoSuchMethod`, { method: "POST", headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }, body: new Uint8Array(5) });
    expect(res.status).toBe(200);
    expect(res.headers.get("grpc-status")).toBe("12");
    expect(res.headers.get("content-type")).toMatch(/^application\/grpc-web/);
  });
});

describe("a controller's port", () => {
  let etcd: TestEtcd;
  let controller: ControllerProc;
  beforeAll(async () => {
    etcd = await startEtcd();
    controller = await startControllerProc(etcd, "c-health");
  }, 90_000);
  afterAll(async () => {
    await controller?.proc.stop();
    await etcd?.close();
  });

  it("serves health (SERVING while in the election, NOT_SERVING once etcd is gone) and reflection", async () => {
    const address = new URL(controller.url).host;
    await expect.poll(async () => (await check(address, "")).status, { timeout: 20_000 }).toBe("SERVING");
    const { responses } = await reflect(address, [{ list_services: "" }]);
    expect(responses[0].list_services_response!.service.map((s) => s.name)).toContain("smmf.v1.ControllerService");
    const watcher = watch(address, "smmf.v1.ControllerService");
    await watcher.until("SERVING");
    await etcd.close();
    await watcher.until("NOT_SERVING");
    watcher.close();
  });
});
