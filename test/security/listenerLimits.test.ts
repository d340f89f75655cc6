import http2 from "node:http2";
import { connect } from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listenHttp, type HttpListener } from "../../src/net/listenHttp.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// Limits a hostile client meets on a gateway's port (body limit 64 KiB here).
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ maxBodyBytes: 64 * 1024 });
}, 60_000);
afterAll(() => server?.close());

async function connectCall(body: Buffer | string, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}/smmf.v1.InferenceService/CountTokens`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  return { status: res.status, body: (await res.json()) as { code?: string; message?: string } };
}

describe("listener limits", () => {
  it("a Connect or gRPC body over the body limit is refused without reading it whole, and the server keeps answering", async () => {
    const big = JSON.stringify({ model: "stories260K", prompt: "x".repeat(200 * 1024) });
    const over = await connectCall(big);
    expect(over.status).toBe(429);
    expect(over.body.code).toBe("resource_exhausted");
    const ok = await connectCall(JSON.stringify({ model: "stories260K", prompt: "Once upon a time" }));
    expect(ok.status).toBe(200);
  });

  it("a compressed body (a gzip bomb: 200 MB in 200 KB) is refused, not inflated", async () => {
    const bomb = gzipSync(Buffer.from(JSON.stringify({ model: "stories260K", prompt: "x".repeat(200 * 1024 * 1024) })));
    expect(bomb.length).toBeLessThan(1024 * 1024);
    const res = await connectCall(bomb, { "content-encoding": "gzip" });
    expect(res.status).toBe(415);
    const rest = await fetch(`${server.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: bomb });
    expect(rest.status).toBe(415);
    expect(((await rest.json()) as { error: { code: string } }).error.code).toBe("unsupported_media_type");
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it("malformed percent-encoding in a path is a 400, not a 500", async () => {
    for (const path of ["/api/v1/models/%ff", "/v1/models/%zz", "/api/v1/requests/%e0%a4"]) {
      const res = await fetch(`${server.url}${path}`);
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_argument");
    }
  });

  it("a body nested 10,000 deep is a 400, and the request log and metrics keep working", async () => {
    const deep = `{"model":"stories260K","prompt":"Hi","stop":${"[".repeat(10_000)}${"]".repeat(10_000)}}`;
    const res = await fetch(`${server.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: deep });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/nested more than 64 levels/);
    const ok = await server.openai.completions.create({ model: "stories260K", prompt: "Once", max_tokens: 2 });
    expect(ok.usage?.completion_tokens).toBe(2);
    await expect.poll(async () => (await fetch(`${server.url}/api/v1/requests?limit=5`)).status, { timeout: 5_000 }).toBe(200);
  });

  it("caps the concurrent streams of one HTTP/2 connection", async () => {
    const session = http2.connect(server.url);
    try {
      const settings = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
      expect(settings.maxConcurrentStreams).toBe(256);
    } finally {
      session.close();
    }
  });
});

describe("header timeout", () => {
  let listener: HttpListener;
  beforeAll(async () => {
    listener = await listenHttp((_req, res) => res.end("ok"), "127.0.0.1", 0, { headersTimeoutMs: 400 });
  });
  afterAll(() => listener?.close());

  it("closes a connection whose headers never finish (slowloris) within the header timeout's bound", async () => {
    const socket = connect(listener.port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const started = Date.now();
    socket.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    socket.resume();
    await new Promise((r) => socket.once("close", r));
    // 400 ms, checked every 100 ms; generous for a loaded machine, far below the default's 30 s.
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
