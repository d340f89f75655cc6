import http from "node:http";
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import tls from "node:tls";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CertificateFiles } from "../../src/net/CertificateFiles.js";
import { makeTestCa } from "../helpers/testCertificates.js";
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

  it("a request message that is not valid protobuf is the caller's error (400 / INVALID_ARGUMENT), not an internal one", async () => {
    const malformed = new Uint8Array([0x0a, 0x50, 1, 2]); // a field claiming 80 bytes, with 2
    const res = await fetch(`${server.url}/smmf.v1.InferenceService/CountTokens`, { method: "POST", headers: { "content-type": "application/proto" }, body: malformed });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe("invalid_argument");
    const session = http2.connect(server.url);
    try {
      const stream = session.request({ ":method": "POST", ":path": "/smmf.v1.InferenceService/CountTokens", "content-type": "application/grpc", te: "trailers" });
      const frame = Buffer.alloc(5 + malformed.length);
      frame.writeUInt32BE(malformed.length, 1);
      frame.set(malformed, 5);
      stream.end(frame);
      stream.resume();
      const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once("trailers", resolve));
      expect(trailers["grpc-status"]).toBe("3");
    } finally {
      session.close();
    }
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

/** POSTs `size` bytes in 64 KiB writes on one keep-alive connection; resolves with the status and body read, or the error that ended it. */
function postLarge(port: number, path: string, size: number, agent: http.Agent, chunked = false): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const headers: Record<string, string | number> = { "content-type": "application/json" };
    if (!chunked) headers["content-length"] = size;
    const req = http.request({ host: "127.0.0.1", port, path, method: "POST", agent, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    const write = () => {
      while (sent < size) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once("drain", write);
      }
      req.end();
    };
    write();
  });
}

describe("oversized bodies", () => {
  it("a client sending a 12 MB body reads its 413 (REST) instead of a reset connection", async () => {
    const port = Number(new URL(server.url).port);
    for (const chunked of [false, true]) {
      const agent = new http.Agent({ keepAlive: false });
      const res = await postLarge(port, "/v1/chat/completions", 12 * 1024 * 1024, agent, chunked);
      expect(res, `chunked: ${chunked}`).toMatchObject({ status: 413 });
      expect(JSON.parse((res as { body: string }).body).error.code).toBe("payload_too_large");
      agent.destroy();
    }
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it("a 20 MB Connect body is refused with resource_exhausted, readable by the client, and /healthz answers meanwhile", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const res = await postLarge(Number(new URL(server.url).port), "/smmf.v1.InferenceService/CountTokens", 20 * 1024 * 1024, agent);
    expect(res).toMatchObject({ status: 429 });
    expect(JSON.parse((res as { body: string }).body).code).toBe("resource_exhausted");
    agent.destroy();
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });
});

/** POSTs `size` bytes on an HTTP/2 stream; resolves with the status and the whole answer once it has been read (the server may then reset the stream, NO_ERROR, to stop the upload). */
function h2PostLarge(url: string, path: string, size: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/json" });
    let status = 0;
    let body = "";
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.setEncoding("utf8");
    stream.on("data", (c: string) => (body += c));
    stream.on("error", () => undefined);
    const done = () => {
      session.destroy();
      resolve({ status, body });
    };
    stream.once("end", done);
    stream.once("close", done);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    const write = () => {
      while (sent < size) {
        sent += chunk.length;
        if (!stream.write(chunk)) return void stream.once("drain", write);
      }
      stream.end();
    };
    write();
  });
}

describe("oversized bodies over HTTP/2", () => {
  it("a 12 MB body on an HTTP/2 stream gets its whole 413 (REST) or resource_exhausted (Connect)", async () => {
    const rest = await h2PostLarge(server.url, "/v1/embeddings", 12 * 1024 * 1024);
    expect(rest.status).toBe(413);
    expect(JSON.parse(rest.body).error.code).toBe("payload_too_large");
    const rpc = await h2PostLarge(server.url, "/smmf.v1.InferenceService/CountTokens", 12 * 1024 * 1024);
    expect(rpc.status).toBe(429);
    expect(JSON.parse(rpc.body).code).toBe("resource_exhausted");
  });
});

describe("methods that are not served", () => {
  it("request headers over 64 KiB in all get 431; just under passes", async () => {
    expect((await fetch(`${server.url}/healthz`, { headers: { "x-big": "a".repeat(60 * 1024) } })).status).toBe(200);
    const socket = connect(Number(new URL(server.url).port), "127.0.0.1");
    let answer = "";
    socket.on("data", (c: Buffer) => (answer += c.toString()));
    socket.on("error", () => undefined);
    socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${"a".repeat(70 * 1024)}\r\n\r\n`);
    await new Promise((r) => socket.once("close", r));
    expect(answer).toMatch(/^HTTP\/1.1 431 /);
  });

  it("CONNECT and an Upgrade request get 405, not a silent close", async () => {
    for (const head of ["CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"]) {
      const socket = connect(Number(new URL(server.url).port), "127.0.0.1");
      let answer = "";
      socket.on("data", (c: Buffer) => (answer += c.toString()));
      socket.write(head);
      await new Promise((r) => socket.once("close", r));
      expect(answer, head).toMatch(/^HTTP\/1.1 405 /);
      expect(answer).toContain('"code":"method_not_allowed"');
    }
  });
});

describe("connection limits", () => {
  const opened: Socket[] = [];
  const open = async (port: number): Promise<Socket> => {
    const socket = connect(port, "127.0.0.1");
    opened.push(socket);
    await new Promise((r) => socket.once("connect", r));
    return socket;
  };
  afterAll(() => opened.forEach((s) => s.destroy()));

  it("closes connections beyond --max-connections at once, and takes new ones when others close", async () => {
    const listener = await listenHttp((_req, res) => res.end("ok"), "127.0.0.1", 0, { maxConnections: 3 });
    try {
      const first = [await open(listener.port), await open(listener.port), await open(listener.port)];
      const extra = await open(listener.port);
      await new Promise((r) => extra.once("close", r));
      first[0].destroy();
      await new Promise((r) => first[0].once("close", r));
      // The server notices the close asynchronously: retry until a new connection is kept and answered.
      await expect
        .poll(async () => {
          const res = await fetch(`http://127.0.0.1:${listener.port}/`, { headers: { connection: "close" } }).catch(() => undefined);
          return res?.status;
        }, { timeout: 10_000 })
        .toBe(200);
    } finally {
      await listener.close();
    }
  });

  it("closes idle connections: HTTP/2 sessions without streams and HTTP/1.1 keep-alive ones", async () => {
    const listener = await listenHttp((_req, res) => res.end("ok"), "127.0.0.1", 0, { idleSocketTimeoutMs: 300 });
    try {
      const session = http2.connect(`http://127.0.0.1:${listener.port}`);
      session.on("error", () => undefined);
      const status = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":path": "/" });
        stream.on("response", (h) => resolve(Number(h[":status"])));
        stream.on("error", reject);
        stream.resume();
        stream.end();
      });
      expect(status).toBe(200);
      await new Promise((r) => session.once("close", r));

      const socket = await open(listener.port);
      socket.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      let answer = "";
      socket.on("data", (c: Buffer) => (answer += c.toString()));
      await new Promise((r) => socket.once("close", r));
      expect(answer).toMatch(/^HTTP\/1.1 200/);
    } finally {
      await listener.close();
    }
  });

  it("a TLS connection that never finishes its handshake is closed within the header timeout", async () => {
    const ca = makeTestCa();
    try {
      const files = new CertificateFiles(ca.issue("server"));
      const listener = await listenHttp((_req, res) => res.end("ok"), "127.0.0.1", 0, { headersTimeoutMs: 400, tls: { files } });
      try {
        const socket = await open(listener.port);
        const started = Date.now();
        socket.resume();
        await new Promise((r) => socket.once("close", r));
        expect(Date.now() - started).toBeLessThan(10_000);
      } finally {
        await listener.close();
        files.close();
      }
    } finally {
      ca.remove();
    }
  });
});

describe("certificate files", () => {
  it("are reloaded when they change on disk; a broken set is not taken", async () => {
    const ca = makeTestCa();
    const files = new CertificateFiles({ ...ca.issue("server"), ca: ca.caFile });
    try {
      const listener = await listenHttp((_req, res) => res.end("ok"), "127.0.0.1", 0, { tls: { files } });
      const served = () =>
        new Promise<string>((resolve, reject) => {
          const socket = tls.connect({ host: "127.0.0.1", port: listener.port, ca: files.current.ca }, () => {
            resolve(socket.getPeerCertificate().fingerprint256);
            socket.destroy();
          });
          socket.on("error", reject);
        });
      const first = await served();
      const changed = new Promise((r) => files.onChange(r));
      ca.issue("server");
      await changed;
      expect(files.reloads).toBe(1);
      expect(await served()).not.toBe(first);
      // A key that does not match the certificate is refused; the last good pair stays in use.
      const second = await served();
      writeFileSync(join(ca.dir, "server.key"), "not a key");
      files.reload();
      expect(files.reloads).toBe(1);
      expect(await served()).toBe(second);
      await listener.close();
    } finally {
      files.close();
      ca.remove();
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
