import { describe, it, expect, afterEach } from "vitest";
import diagnosticsChannel from "node:diagnostics_channel";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { listenHttp, type HttpHandler, type HttpListener } from "./listenHttp.js";

const HOST = "127.0.0.1";
let listener: HttpListener | undefined;

afterEach(async () => {
  await listener?.close();
  listener = undefined;
});

const echoHandler: HttpHandler = (req, res) => {
  res.setHeader("content-type", "text/plain");
  res.setHeader("x-proto", req.httpVersion);
  res.end(`${req.method} ${req.url} over ${req.httpVersion}`);
};

function h1Get(port: number, path = "/", agent?: http.Agent): Promise<{ status: number; body: string; proto: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, path, method: "GET", agent: agent ?? false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, proto: res.httpVersion }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

function h2Get(port: number, path = "/"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${HOST}:${port}`);
    session.on("error", reject);
    const stream = session.request({ ":method": "GET", ":path": path });
    let status = 0;
    let body = "";
    stream.setEncoding("utf8");
    stream.on("response", (headers) => (status = Number(headers[":status"])));
    stream.on("data", (c) => (body += c));
    stream.on("end", () => {
      session.close();
      resolve({ status, body });
    });
    stream.on("error", reject);
    stream.end();
  });
}

describe("listenHttp", () => {
  it("binds port 0 to a free port and reports it", async () => {
    listener = await listenHttp(echoHandler, HOST, 0);
    expect(listener.port).toBeGreaterThan(0);
    expect(listener.host).toBe(HOST);
  });

  it("answers HTTP/1.1 on the port", async () => {
    listener = await listenHttp(echoHandler, HOST, 0);
    const res = await h1Get(listener.port, "/v1/models");
    expect(res.status).toBe(200);
    expect(res.proto).toBe("1.1");
    expect(res.body).toBe("GET /v1/models over 1.1");
  });

  it("answers HTTP/2 with prior knowledge on the same port", async () => {
    listener = await listenHttp(echoHandler, HOST, 0);
    const res = await h2Get(listener.port, "/smmf.v1.Inference/Generate");
    expect(res.status).toBe(200);
    expect(res.body).toBe("GET /smmf.v1.Inference/Generate over 2.0");
  });

  it("serves both protocols at once", async () => {
    listener = await listenHttp(echoHandler, HOST, 0);
    const [a, b, c, d] = await Promise.all([h1Get(listener.port, "/a"), h2Get(listener.port, "/b"), h1Get(listener.port, "/c"), h2Get(listener.port, "/d")]);
    expect(a.body).toBe("GET /a over 1.1");
    expect(b.body).toBe("GET /b over 2.0");
    expect(c.body).toBe("GET /c over 1.1");
    expect(d.body).toBe("GET /d over 2.0");
  });

  it("handles an HTTP/2 preface split across several TCP packets", async () => {
    listener = await listenHttp(echoHandler, HOST, 0);
    const port = listener.port;
    // The server's side of each connection (this process accepts it), to see what it has read so far.
    const accepted: net.Socket[] = [];
    const onAccepted = (message: unknown) => accepted.push((message as { socket: net.Socket }).socket);
    diagnosticsChannel.subscribe("net.server.socket", onAccepted);
    try {
      // Write the preface a few bytes at a time, each part only once the server has read the one before, so
      // that it gets the preface in pieces; it must wait for all of it before choosing HTTP/2, and then reply
      // with an HTTP/2 SETTINGS frame (type 0x4) rather than an HTTP/1.1 status line.
      const socket = net.connect(port, HOST);
      socket.on("error", () => undefined);
      let data = Buffer.alloc(0);
      const replied = new Promise<Buffer>((resolve, reject) => {
        socket.on("data", (chunk) => {
          data = Buffer.concat([data, chunk]);
          if (data.length >= 9) resolve(data);
        });
        socket.on("error", reject);
      });
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      let sent = 0;
      for (const part of [preface.subarray(0, 3), preface.subarray(3, 9), preface.subarray(9)]) {
        socket.write(part);
        sent += part.length;
        await expect.poll(() => accepted.find((s) => s.remotePort === socket.localPort)?.bytesRead, { timeout: 10_000, interval: 5 }).toBe(sent);
        // Nothing comes back until the whole preface is in (then the server's SETTINGS come).
        if (sent < preface.length) expect(data.length).toBe(0);
      }
      socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
      const reply = await replied;
      socket.destroy();
      expect(reply.subarray(0, 4).toString("latin1")).not.toBe("HTTP");
      expect(reply[3]).toBe(0x4);
    } finally {
      diagnosticsChannel.unsubscribe("net.server.socket", onAccepted);
    }
  });

  it("rejects a second listener on a taken port", async () => {
    listener = await listenHttp(echoHandler, HOST, 0);
    await expect(listenHttp(echoHandler, HOST, listener.port)).rejects.toMatchObject({ code: "EADDRINUSE" });
  });

  it("close() stops accepting connections", async () => {
    const l = await listenHttp(echoHandler, HOST, 0);
    const port = l.port;
    await h1Get(port);
    await l.close();
    await expect(h1Get(port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });

  it("close() resolves with idle keep-alive HTTP/1.1 and open HTTP/2 connections", async () => {
    const l = await listenHttp(echoHandler, HOST, 0);
    const agent = new http.Agent({ keepAlive: true });
    await h1Get(l.port, "/", agent);
    const session = http2.connect(`http://${HOST}:${l.port}`);
    session.on("error", () => {});
    await new Promise<void>((resolve) => session.once("connect", () => resolve()));
    const started = Date.now();
    await l.close();
    expect(Date.now() - started).toBeLessThan(1000);
    agent.destroy();
    session.destroy();
  });

  it("close(graceMs) waits for an in-flight request to finish", async () => {
    let requestArrived!: () => void;
    const arrived = new Promise<void>((r) => (requestArrived = r));
    let respond!: () => void;
    const slow: HttpHandler = (_req, res) => {
      respond = () => res.end("done");
      requestArrived();
    };
    const l = await listenHttp(slow, HOST, 0);
    const pending = h1Get(l.port);
    await arrived;
    let closed = false;
    const closing = l.close(5000).then(() => (closed = true));
    // It stops accepting at once, and waits for the request in flight (answered only now).
    await expect(h1Get(l.port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    expect(closed).toBe(false);
    respond();
    await closing;
    await expect(pending).resolves.toMatchObject({ status: 200, body: "done" });
  });

  it("close(graceMs) lets an in-flight HTTP/2 stream finish", async () => {
    let requestArrived!: () => void;
    const arrived = new Promise<void>((r) => (requestArrived = r));
    let respond!: () => void;
    const slow: HttpHandler = (_req, res) => {
      respond = () => res.end("h2 done");
      requestArrived();
    };
    const l = await listenHttp(slow, HOST, 0);
    const pending = h2Get(l.port);
    await arrived;
    let closed = false;
    const closing = l.close(5000).then(() => (closed = true));
    await expect(h1Get(l.port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    expect(closed).toBe(false);
    respond();
    await closing;
    await expect(pending).resolves.toEqual({ status: 200, body: "h2 done" });
  });

  it("close(graceMs) gives up after graceMs and drops the request", async () => {
    let requestArrived!: () => void;
    const arrived = new Promise<void>((r) => (requestArrived = r));
    const never: HttpHandler = () => requestArrived();
    const l = await listenHttp(never, HOST, 0);
    const pending = h1Get(l.port);
    pending.catch(() => {});
    await arrived;
    const started = Date.now();
    await l.close(100);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(90);
    expect(waited).toBeLessThan(2000);
    await expect(pending).rejects.toBeDefined();
  });

  it("close() without grace drops an in-flight request at once", async () => {
    let requestArrived!: () => void;
    const arrived = new Promise<void>((r) => (requestArrived = r));
    const never: HttpHandler = () => requestArrived();
    const l = await listenHttp(never, HOST, 0);
    const pending = h1Get(l.port);
    pending.catch(() => {});
    await arrived;
    const started = Date.now();
    await l.close();
    expect(Date.now() - started).toBeLessThan(500);
    await expect(pending).rejects.toBeDefined();
  });
});
