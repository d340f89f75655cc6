import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { isPinned } from "./downloadCache.js";
import { acquireModelFile, cachePathOf, fetchModelFile } from "./fetchModelFile.js";

// Every server here listens on loopback (127.0.0.1 or ::1) and every URL points at one of them: nothing leaves the machine.

interface CountingServer {
  server: Server;
  /** Connections accepted so far. */
  connections: number;
  /** Requests seen, by path. */
  paths: string[];
  /** Sockets still open. */
  sockets: Set<Socket>;
  port: number;
  url(path: string, host?: string): string;
  handler: (req: IncomingMessage, res: ServerResponse) => void;
}

async function countingServer(host = "127.0.0.1"): Promise<CountingServer> {
  const state = { connections: 0, paths: [] as string[], sockets: new Set<Socket>() } as CountingServer;
  state.handler = (_req, res) => res.writeHead(404).end();
  state.server = createServer((req, res) => {
    state.paths.push(req.url ?? "");
    state.handler(req, res);
  });
  state.server.on("connection", (socket: Socket) => {
    state.connections++;
    state.sockets.add(socket);
    socket.once("close", () => state.sockets.delete(socket));
  });
  state.server.listen(0, host);
  await once(state.server, "listening");
  state.port = (state.server.address() as AddressInfo).port;
  state.url = (path, urlHost = host.includes(":") ? `[${host}]` : host) => `http://${urlHost}:${state.port}${path}`;
  return state;
}

async function closeServer(s: CountingServer | undefined): Promise<void> {
  if (!s) return;
  for (const socket of s.sockets) socket.destroy();
  if (s.server.listening) await new Promise<void>((r) => s.server.close(() => r()));
}

const MODEL = Buffer.concat([Buffer.from("GGUF"), Buffer.alloc(64 * 1024, 7)]);
const LOOPBACK = { allowedHosts: ["127.0.0.1"], allowPrivate: true };

let a: CountingServer;
let b: CountingServer;
let cacheDir: string;

beforeAll(async () => {
  [a, b] = await Promise.all([countingServer(), countingServer()]);
});

afterAll(async () => {
  await Promise.all([closeServer(a), closeServer(b)]);
});

afterEach(() => {
  a.handler = b.handler = (_req, res) => res.writeHead(404).end();
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
});

function freshCache(): string {
  cacheDir = mkdtempSync(join(tmpdir(), "smmf-fetch-"));
  return cacheDir;
}

async function failure(promise: Promise<unknown>): Promise<{ code: string; param: string; message: string }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "the download should fail").toBeDefined();
  return err as { code: string; param: string; message: string };
}

function serveModel(res: ServerResponse): void {
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(MODEL.length) });
  res.end(MODEL);
}

describe("fetchModelFile", () => {
  it("refuses every host by default, without connecting", async () => {
    const before = a.connections;
    const err = await failure(fetchModelFile(a.url("/m.gguf"), freshCache(), "w1"));
    expect(err).toMatchObject({ code: "failed_precondition", param: "source" });
    expect(err.message).toBe(`'source' ${a.url("/m.gguf")} is not an allowed model source: host 127.0.0.1 is not in the worker's allowed hosts`);
    expect(a.connections).toBe(before);
  });

  it("refuses a listed loopback host while private addresses are not allowed, without connecting", async () => {
    const before = a.connections;
    for (const url of [a.url("/m.gguf"), a.url("/m.gguf", "localhost")]) {
      const err = await failure(fetchModelFile(url, freshCache(), "w1", { allowedHosts: ["127.0.0.1", "localhost"], allowPrivate: false }));
      expect(err).toMatchObject({ code: "failed_precondition", param: "source" });
      expect(err.message).toMatch(/is not an allowed model source: host (127\.0\.0\.1|localhost) resolves to a loopback address/);
    }
    expect(a.connections).toBe(before);
    expect(readdirSync(cacheDir)).toEqual([]);
  });

  it("downloads from an allowed loopback host, checks the GGUF magic, and reuses the file", async () => {
    a.handler = (req, res) => (req.url === "/m.gguf" ? serveModel(res) : res.writeHead(404).end());
    const dir = freshCache();
    const path = await fetchModelFile(a.url("/m.gguf"), dir, "w1", LOOPBACK);
    expect(readFileSync(path).equals(MODEL)).toBe(true);
    expect(readdirSync(dir)).toEqual([path.split("/").pop()]);
    const connections = a.connections;
    expect(await fetchModelFile(a.url("/m.gguf"), dir, "w1", LOOPBACK)).toBe(path);
    expect(a.connections).toBe(connections);
  });

  it("connects a listed name to the address its check resolved", async () => {
    a.handler = (_req, res) => serveModel(res);
    const asked: string[] = [];
    const lookup = async (hostname: string) => {
      asked.push(hostname);
      return [{ address: "127.0.0.1", family: 4 }];
    };
    const path = await fetchModelFile(a.url("/named.gguf", "localhost"), freshCache(), "w1", { allowedHosts: ["localhost"], allowPrivate: true, lookup });
    expect(readFileSync(path).equals(MODEL)).toBe(true);
    expect(asked).toEqual(["localhost"]);
  });

  it("refuses a cached file once its host is no longer allowed", async () => {
    a.handler = (_req, res) => serveModel(res);
    const dir = freshCache();
    await fetchModelFile(a.url("/cached.gguf"), dir, "w1", LOOPBACK);
    const err = await failure(fetchModelFile(a.url("/cached.gguf"), dir, "w1", { allowedHosts: [], allowPrivate: true }));
    expect(err.message).toContain("is not an allowed model source");
  });

  it("says the HTTP status of a failure, never the body", async () => {
    a.handler = (_req, res) => res.writeHead(500, { "content-type": "text/plain" }).end("internal secret: db password is hunter2");
    const err = await failure(fetchModelFile(a.url("/m.gguf?token=abc"), freshCache(), "w7", LOOPBACK));
    expect(err).toMatchObject({ code: "failed_precondition", param: "source" });
    expect(err.message).toBe(`worker w7 cannot download ${a.url("/m.gguf")}: HTTP 500`);
    expect(readdirSync(cacheDir)).toEqual([]);
  });

  it("refuses a file that is not GGUF without quoting it, and keeps nothing", async () => {
    a.handler = (_req, res) => res.writeHead(200).end("root:x:0:0:root:/root:/bin/bash\n");
    const err = await failure(fetchModelFile(a.url("/passwd"), freshCache(), "w1", LOOPBACK));
    expect(err).toMatchObject({ code: "failed_precondition", param: "source", message: `${a.url("/passwd")} is not a GGUF file` });
    expect(readdirSync(cacheDir)).toEqual([]);
  });

  it("follows redirects to allowed hosts, each checked again", async () => {
    a.handler = (req, res) => res.writeHead(302, { location: b.url("/final.gguf") }).end();
    b.handler = (req, res) => (req.url === "/final.gguf" ? serveModel(res) : res.writeHead(404).end());
    const path = await fetchModelFile(a.url("/start.gguf"), freshCache(), "w1", LOOPBACK);
    expect(readFileSync(path).equals(MODEL)).toBe(true);
    expect(b.paths).toContain("/final.gguf");
  });

  it("refuses a redirect to a host that is not allowed: the second server sees no connection", async () => {
    const before = b.connections;
    a.handler = (_req, res) => res.writeHead(301, { location: b.url("/m.gguf", "localhost") }).end("moved");
    b.handler = (_req, res) => serveModel(res);
    const err = await failure(fetchModelFile(a.url("/m.gguf"), freshCache(), "w1", LOOPBACK));
    expect(err).toMatchObject({ code: "failed_precondition", param: "source" });
    expect(err.message).toBe(`'source' ${b.url("/m.gguf", "localhost")} is not an allowed model source: host localhost is not in the worker's allowed hosts`);
    expect(b.connections).toBe(before);
    expect(readdirSync(cacheDir)).toEqual([]);
  });

  it("follows at most 5 redirects", async () => {
    a.handler = (req, res) => {
      const n = Number(/\/r(\d+)/.exec(req.url ?? "")?.[1] ?? 0);
      if (n < 5) res.writeHead(307, { location: `/r${n + 1}` }).end();
      else if (n === 5) serveModel(res);
      else res.writeHead(404).end();
    };
    expect(readFileSync(await fetchModelFile(a.url("/r0"), freshCache(), "w1", LOOPBACK)).equals(MODEL)).toBe(true);
    a.handler = (req, res) => res.writeHead(302, { location: `${req.url}x` }).end();
    const requestsBefore = a.paths.length;
    const err = await failure(fetchModelFile(a.url("/loop"), freshCache(), "w1", LOOPBACK));
    expect(err.message).toBe(`worker w1 cannot download ${a.url("/loop")}: more than 5 redirects`);
    expect(a.paths.length - requestsBefore).toBe(6);
  });

  it("refuses a body over maxBytes, announced or not, and leaves no file", async () => {
    const dir = freshCache();
    a.handler = (_req, res) => serveModel(res);
    const announced = await failure(fetchModelFile(a.url("/big1.gguf"), dir, "w1", { ...LOOPBACK, maxBytes: 1000 }));
    expect(announced.message).toBe(`worker w1 cannot download ${a.url("/big1.gguf")}: the file is larger than the worker's limit of 1000 bytes`);
    // Chunked, without a length: cut off while streaming.
    a.handler = (_req, res) => {
      res.writeHead(200);
      res.write(MODEL.subarray(0, 800));
      res.write(MODEL.subarray(800, 1600));
      res.end(MODEL.subarray(1600));
    };
    const streamed = await failure(fetchModelFile(a.url("/big2.gguf"), dir, "w1", { ...LOOPBACK, maxBytes: 1000 }));
    expect(streamed.message).toBe(`worker w1 cannot download ${a.url("/big2.gguf")}: the file is larger than the worker's limit of 1000 bytes`);
    expect(readdirSync(dir)).toEqual([]);
    // Exactly at the limit is fine.
    expect(readFileSync(await fetchModelFile(a.url("/exact.gguf"), dir, "w1", { ...LOOPBACK, maxBytes: MODEL.length })).length).toBe(MODEL.length);
  });

  it("cuts off a server that stalls, after timeoutMs, and leaves no file", async () => {
    const dir = freshCache();
    let closed: Promise<unknown> | undefined;
    a.handler = (_req, res) => {
      closed = once(res, "close");
      res.writeHead(200, { "content-length": String(MODEL.length) });
      res.write(MODEL.subarray(0, 100)); // and never more
    };
    const err = await failure(fetchModelFile(a.url("/slow.gguf"), dir, "w1", { ...LOOPBACK, timeoutMs: 300 }));
    expect(err).toMatchObject({ code: "failed_precondition", param: "source" });
    expect(err.message).toBe(`worker w1 cannot download ${a.url("/slow.gguf")}: no complete file within 300 ms`);
    expect(readdirSync(dir)).toEqual([]);
    // The worker closed its side: the server sees the response closed.
    expect(closed).toBeDefined();
    await closed;
    // A server that never answers at all is cut off the same way.
    a.handler = () => undefined;
    const silent = await failure(fetchModelFile(a.url("/silent.gguf"), dir, "w1", { ...LOOPBACK, timeoutMs: 300 }));
    expect(silent.message).toBe(`worker w1 cannot download ${a.url("/silent.gguf")}: no complete file within 300 ms`);
  });

  it("shares one download between concurrent calls", async () => {
    let requests = 0;
    a.handler = (_req, res) => {
      requests++;
      serveModel(res);
    };
    const dir = freshCache();
    const [p1, p2] = await Promise.all([fetchModelFile(a.url("/shared.gguf"), dir, "w1", LOOPBACK), fetchModelFile(a.url("/shared.gguf"), dir, "w1", LOOPBACK)]);
    expect(p1).toBe(p2);
    expect(requests).toBe(1);
  });
});

describe("fetchModelFile with a bounded cache", () => {
  it("refuses a file larger than the whole cache before its body: by its Content-Length, and keeps nothing", async () => {
    const dir = freshCache();
    let closed: Promise<unknown> | undefined;
    a.handler = (_req, res) => {
      closed = once(res, "close");
      // Only the head: the refusal cannot wait for the body.
      res.writeHead(200, { "content-length": String(MODEL.length) });
      res.flushHeaders();
    };
    const err = await failure(fetchModelFile(a.url("/huge.gguf"), dir, "w1", { ...LOOPBACK, cacheMaxBytes: MODEL.length - 1 }));
    expect(err).toMatchObject({ code: "failed_precondition", param: "source" });
    expect(err.message).toBe(`worker w1 cannot download ${a.url("/huge.gguf")}: the file (${MODEL.length} bytes) is larger than the worker's whole download cache of ${MODEL.length - 1} bytes`);
    await closed;
    expect(readdirSync(dir)).toEqual([]);
  });

  it("cuts off a download without a length as soon as it passes the cache's bound, and keeps nothing", async () => {
    const dir = freshCache();
    a.handler = (_req, res) => {
      res.writeHead(200);
      res.write(MODEL.subarray(0, 1000));
      res.end(MODEL.subarray(1000));
    };
    const err = await failure(fetchModelFile(a.url("/chunked.gguf"), dir, "w1", { ...LOOPBACK, cacheMaxBytes: 2000 }));
    expect(err.message).toBe(`worker w1 cannot download ${a.url("/chunked.gguf")}: the file is larger than the worker's whole download cache of 2000 bytes`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("evicts the least recently used file nothing uses to make room, and keeps the one in use", async () => {
    a.handler = (_req, res) => serveModel(res);
    const dir = freshCache();
    const bound = 2 * MODEL.length + 100; // room for two
    const opts = { ...LOOPBACK, cacheMaxBytes: bound };
    const used = await acquireModelFile(a.url("/used.gguf"), dir, "w1", opts);
    const unused = await acquireModelFile(a.url("/unused.gguf"), dir, "w1", opts);
    unused.release();
    expect(isPinned(unused.path)).toBe(false);
    // The one in use is the least recently used of the two; it stays all the same.
    utimesSync(used.path, 1_000, 1_000);
    const third = await acquireModelFile(a.url("/third.gguf"), dir, "w1", opts);
    expect(existsSync(used.path)).toBe(true);
    expect(existsSync(unused.path)).toBe(false);
    expect(existsSync(third.path)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual([used.path, third.path].map((p) => p.split("/").pop()).sort());
    // Let go: the oldest goes when the next one needs room.
    used.release();
    third.release();
    utimesSync(third.path, 2_000, 2_000);
    const fourth = await acquireModelFile(a.url("/fourth.gguf"), dir, "w1", opts);
    expect(existsSync(third.path)).toBe(false);
    expect(existsSync(used.path)).toBe(true); // its release recorded a use, after the third's
    fourth.release();
  });

  it("records a use when a file is taken and when it is let go; a failed download leaves no pin", async () => {
    a.handler = (_req, res) => serveModel(res);
    const dir = freshCache();
    const first = await acquireModelFile(a.url("/m.gguf"), dir, "w1", LOOPBACK);
    first.release();
    utimesSync(first.path, 1_000, 1_000);
    const again = await acquireModelFile(a.url("/m.gguf"), dir, "w1", LOOPBACK);
    expect(again.path).toBe(first.path);
    expect(statSync(again.path).mtimeMs).toBeGreaterThan(1_000_000);
    expect(isPinned(again.path)).toBe(true);
    utimesSync(again.path, 1_000, 1_000);
    again.release();
    expect(statSync(again.path).mtimeMs).toBeGreaterThan(1_000_000);
    expect(isPinned(again.path)).toBe(false);
    a.handler = (_req, res) => res.writeHead(404).end();
    await failure(acquireModelFile(a.url("/missing.gguf"), dir, "w1", LOOPBACK));
    expect(isPinned(cachePathOf(a.url("/missing.gguf"), dir))).toBe(false);
  });

  it("shares one file between concurrent acquisitions of one URL, each its own user", async () => {
    let requests = 0;
    a.handler = (_req, res) => {
      requests++;
      serveModel(res);
    };
    const dir = freshCache();
    const [x, y] = await Promise.all([acquireModelFile(a.url("/s.gguf"), dir, "w1", LOOPBACK), acquireModelFile(a.url("/s.gguf"), dir, "w1", LOOPBACK)]);
    expect(x.path).toBe(y.path);
    expect(requests).toBe(1);
    x.release();
    expect(isPinned(x.path)).toBe(true);
    y.release();
    expect(isPinned(x.path)).toBe(false);
  });
});

describe("fetchModelFile over IPv6 loopback", async () => {
  const v6 = await countingServer("::1").catch(() => undefined);
  afterAll(() => closeServer(v6));

  it.skipIf(!v6)("refuses [::1] unless listed and private addresses are allowed; then downloads", async () => {
    v6!.handler = (_req, res) => serveModel(res);
    const dir = freshCache();
    await failure(fetchModelFile(v6!.url("/m.gguf"), dir, "w1", { allowedHosts: ["::1"], allowPrivate: false }));
    await failure(fetchModelFile(v6!.url("/m.gguf"), dir, "w1", { allowedHosts: ["127.0.0.1"], allowPrivate: true }));
    expect(v6!.connections).toBe(0);
    const path = await fetchModelFile(v6!.url("/m.gguf"), dir, "w1", { allowedHosts: ["[::1]"], allowPrivate: true });
    expect(readFileSync(path).equals(MODEL)).toBe(true);
    expect(v6!.connections).toBe(1);
  });
});
