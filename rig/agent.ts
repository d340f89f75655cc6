// The rig's client: runs inside the client namespace (`ip netns exec <rig>-client node --import tsx rig/agent.ts`)
// and is the only way in from outside. It listens on a unix socket (the filesystem is shared across network
// namespaces) and answers there:
//   - any request whose target is an absolute URL ("GET http://10.231.0.41:8000/metrics"): forwarded to that
//     address, from the client namespace, as an HTTP proxy does; only addresses of the rig's subnet;
//     `x-rig-timeout-ms` bounds it (504 with `x-rig-proxy-error: timeout`), a connection failure answers 502
//     with `x-rig-proxy-error: <code>`;
//   - POST /load (a LoadSpec, id in ?id=): runs the load generator here, answering NDJSON lines: progress
//     after every request, then {"type":"result","records":[...]}; DELETE /load?id= stops sending (requests
//     in flight finish);
//   - POST /session-probe {address, term, controllerId}: opens a controller Session with that term on a
//     worker, as a deposed leader would, and says whether the worker took it (and a harmless command).
// Flags: --socket PATH --subnet 10.231.0 (the /24's first three octets).
import http from "node:http";
import { rmSync } from "node:fs";
import type { SessionRequest } from "../src/gen/smmf/v1/worker_pb.js";
import { runLoad, type LoadSpec } from "./load.js";

function flag(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || !process.argv[i + 1]) throw new Error(`rig agent: --${name} is required`);
  return process.argv[i + 1];
}

const socketPath = flag("socket");
const subnet = flag("subnet");
const loads = new Map<string, AbortController>();

function inRig(hostname: string): boolean {
  return hostname.startsWith(`${subnet}.`) && /^\d+\.\d+\.\d+\.\d+$/.test(hostname);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (text += c));
    req.on("end", () => resolve(text));
    req.on("error", reject);
  });
}

const proxyAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function proxy(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url!);
  if (url.protocol !== "http:" || !inRig(url.hostname)) {
    sendJson(res, 403, { error: `the rig's client reaches only the rig's own addresses (${subnet}.0/24), not ${url.host}` }, { "x-rig-proxy-error": "forbidden" });
    return;
  }
  const timeoutMs = Number(req.headers["x-rig-timeout-ms"] ?? 10_000);
  const headers = { ...req.headers };
  delete headers["x-rig-timeout-ms"];
  delete headers["proxy-connection"];
  headers.host = url.host;
  let answered = false;
  const upstream = http.request(url, { method: req.method, headers, agent: proxyAgent }, (up) => {
    answered = true;
    res.writeHead(up.statusCode ?? 502, up.headers);
    up.pipe(res);
    up.on("error", () => res.destroy());
  });
  const timer = setTimeout(() => {
    upstream.destroy(new Error("timeout"));
    if (!answered && !res.headersSent) sendJson(res, 504, { error: `no answer from ${url.host} within ${timeoutMs} ms` }, { "x-rig-proxy-error": "timeout" });
    else res.destroy();
  }, timeoutMs);
  res.on("close", () => clearTimeout(timer));
  upstream.on("error", (err) => {
    clearTimeout(timer);
    if (res.headersSent) return void res.destroy();
    const code = (err as NodeJS.ErrnoException).code ?? err.message;
    sendJson(res, 502, { error: `${url.host}: ${code}` }, { "x-rig-proxy-error": code });
  });
  req.pipe(upstream);
}

async function load(req: http.IncomingMessage, res: http.ServerResponse, id: string): Promise<void> {
  const spec = JSON.parse(await readBody(req)) as LoadSpec;
  for (const target of spec.targets) if (!inRig(new URL(target).hostname)) throw new Error(`load target ${target} is outside the rig`);
  const stop = new AbortController();
  loads.set(id, stop);
  res.writeHead(200, { "content-type": "application/x-ndjson" });
  res.write(`${JSON.stringify({ type: "started", id })}\n`);
  try {
    const records = await runLoad(spec, (p, record) => res.write(`${JSON.stringify({ type: "progress", ...p, ok: record.ok, instance: record.instance })}\n`), stop.signal);
    res.end(`${JSON.stringify({ type: "result", records })}\n`);
  } finally {
    loads.delete(id);
  }
}

interface ProbeRequest {
  address: string;
  term: string;
  controllerId?: string;
}

/** A controller Session with a given term, as a leader deposed in the meantime would open it. */
async function sessionProbe(probe: ProbeRequest): Promise<unknown> {
  const { create } = await import("@bufbuild/protobuf");
  const { ConnectError, Code } = await import("@connectrpc/connect");
  const { SessionRequestSchema } = await import("../src/gen/smmf/v1/worker_pb.js");
  const { WorkerServiceClients } = await import("../src/controller/WorkerServiceClients.js");
  const { createAsyncQueue } = await import("../src/util/createAsyncQueue.js");
  if (!inRig(new URL(probe.address).hostname)) throw new Error(`probe address ${probe.address} is outside the rig`);
  const clients = new WorkerServiceClients(process.env.SMMF_CLUSTER_SECRET);
  const requests = createAsyncQueue<SessionRequest>();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 8_000);
  requests.push(create(SessionRequestSchema, { command: { case: "open", value: { controllerId: probe.controllerId ?? "rig-probe", term: BigInt(probe.term) } } }));
  const outcome: { opened: boolean; status?: boolean; commandResult?: unknown; error?: { code: string; smmfCode?: string; message: string } } = { opened: false };
  try {
    for await (const response of clients.get(probe.address).session(requests, { signal: abort.signal })) {
      if (response.event.case === "status") {
        outcome.opened = true;
        outcome.status = true;
        // The worker took the session: try a harmless command (unload of an instance that does not exist).
        requests.push(create(SessionRequestSchema, { commandId: 1n, command: { case: "unload", value: { instanceId: "rig-probe-no-such-instance", drain: false } } }));
      } else if (response.event.case === "result") {
        const r = response.event.value;
        outcome.commandResult = { ok: r.ok, errorCode: r.errorCode, errorMessage: r.errorMessage };
        break;
      }
    }
  } catch (err) {
    const e = ConnectError.from(err);
    outcome.error = { code: Code[e.code], smmfCode: e.metadata.get("smmf-error-code") ?? undefined, message: e.rawMessage };
  } finally {
    clearTimeout(timer);
    requests.end();
    abort.abort();
  }
  return outcome;
}

const server = http.createServer((req, res) => {
  void (async () => {
    const raw = req.url ?? "/";
    if (/^[a-z]+:\/\//i.test(raw)) return proxy(req, res);
    const url = new URL(raw, "http://agent");
    if (url.pathname === "/ping") return sendJson(res, 200, { ok: true, pid: process.pid });
    if (url.pathname === "/load" && req.method === "POST") return load(req, res, url.searchParams.get("id") ?? String(Date.now()));
    if (url.pathname === "/load" && req.method === "DELETE") {
      loads.get(url.searchParams.get("id") ?? "")?.abort();
      return sendJson(res, 200, { ok: true });
    }
    if (url.pathname === "/session-probe" && req.method === "POST") return sendJson(res, 200, await sessionProbe(JSON.parse(await readBody(req))));
    sendJson(res, 404, { error: `unknown agent route ${req.method} ${url.pathname}` });
  })().catch((err: unknown) => {
    if (!res.headersSent) sendJson(res, 500, { error: String((err as Error)?.stack ?? err) });
    else res.destroy();
  });
});
server.keepAliveTimeout = 60_000;
rmSync(socketPath, { force: true });
server.listen(socketPath, () => process.stdout.write(`rig agent listening on ${socketPath}\n`));
// The rig ends it with SIGKILL; a closed stdin (the rig process gone) ends it too.
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
