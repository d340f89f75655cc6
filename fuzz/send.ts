import http from "node:http";
import http2 from "node:http2";
import { mayPass, type AuthAs, type FuzzCase, type GrpcCase, type H2Case, type HttpCase, type Raw1Case } from "./cases.js";
import { Prng } from "./prng.js";
import { rawHttp1, rawHttp2 } from "./rawHttp.js";

/** Sends one case to a server and classifies what came back. */

/**
 * Answer classes. ok: 2xx, 4xx (and 1xx/3xx), a 503 the route documents; an RPC answered OK or with a status
 * that is not a server fault; a connection closed where no answer was due (the client gave up first) or refused
 * by the protocol (a GOAWAY or stream reset that HTTP/2 allows); a request node's client would not send.
 * Failures: a 5xx the route does not document, an RPC status INTERNAL/UNKNOWN/DATA_LOSS, an OpenAI error of
 * type server_error in a body, a dropped answer, no answer in time, a 2xx for a caller without the role, and,
 * for the whole run, a crash, a failed health check, RSS not back within 10%, or an error of the fuzzer itself.
 */
export const OK_CLASSES = ["2xx", "4xx", "1xx-3xx", "503-documented", "rpc-ok", "rpc-error-status", "closed-no-answer-due", "refused-by-protocol", "client-refused"] as const;
export const FAIL_CLASSES = ["5xx", "internal-error-in-body", "rpc-internal", "dropped", "timeout", "authz", "crash", "health", "rss", "fuzzer-error"] as const;
export type OutcomeClass = (typeof OK_CLASSES)[number] | (typeof FAIL_CLASSES)[number];

export function isFailure(c: OutcomeClass): boolean {
  return (FAIL_CLASSES as readonly string[]).includes(c);
}

export interface Outcome {
  class: OutcomeClass;
  /** What was seen: a status, an error code. */
  detail: string;
}

export interface Target {
  port: number;
  url: string;
  /** Secrets of the fuzzer's keys by role. */
  keys: Record<"admin" | "reader" | "inference", string>;
  /** Request ids seen in answers (for feedback cases). */
  requestIds: string[];
  /** How long one case may take. */
  timeoutMs: number;
}

const newAgent = () => new http.Agent({ keepAlive: true, maxSockets: 32 });
let agent = newAgent();

/** Closes the keep-alive connections of the HTTP/1.1 agent (a later run gets a new one). */
export function closeAgent(): void {
  agent.destroy();
  agent = newAgent();
}

function authValue(target: Target, auth: AuthAs, index: number): string | undefined {
  if (auth === "none") return undefined;
  if (auth === "admin" || auth === "reader" || auth === "inference") return target.keys[auth];
  const r = new Prng(index ^ 0x5eed);
  if (auth === "bogus") return `smmf-k${r.chars(12, "0123456789abcdef")}-${r.chars(43, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}`;
  return r.pick(["", " ", "null", "smmf-k", "smmf-k000000000000-", "x".repeat(8000), "\u00e9\u00e9", `${target.keys.admin.slice(0, -1)}`, `${target.keys.admin}x`, `${target.keys.admin.toUpperCase()}`]);
}

function withAuth(target: Target, c: { auth: AuthAs; index: number }, headers: Record<string, string>, header: string): Record<string, string> {
  const value = authValue(target, c.auth, c.index);
  if (value === undefined) return headers;
  const r = new Prng(c.index ^ 0xa17);
  // "garbage" also tries odd schemes around a broken key.
  const scheme = header === "authorization" ? (c.auth === "garbage" ? r.pick(["Bearer ", "Basic ", "", "Bearer  ", "bearer "]) : "Bearer ") : "";
  return { ...headers, [header]: `${scheme}${value}` };
}

function fillPlaceholders(target: Target, text: string): string {
  return text.replace(/\{\{REQUEST_ID\}\}/g, () => (target.requestIds.length > 0 ? target.requestIds[target.requestIds.length - 1 - (text.length % Math.min(target.requestIds.length, 50))] : "chatcmpl-none"));
}

function noteRequestId(target: Target, id: unknown): void {
  if (typeof id === "string" && /^(chatcmpl|cmpl|emb|grpc)-[0-9a-f]{32}$/.test(id)) {
    target.requestIds.push(id);
    if (target.requestIds.length > 200) target.requestIds.splice(0, 100);
  }
}

/** The class of an HTTP answer. */
export function classifyStatus(status: number, body: string, c: { auth: AuthAs; expect: FuzzCase["expect"] }): Outcome {
  if (status >= 500) {
    if (c.expect.allowed5xx.includes(status)) return { class: "503-documented", detail: String(status) };
    return { class: "5xx", detail: `${status} ${body.slice(0, 300)}` };
  }
  if (status >= 200 && status < 300 && !mayPass(c.auth, c.expect.role)) return { class: "authz", detail: `${status} with auth ${c.auth} on a route needing ${c.expect.role}` };
  if (/"code"\s*:\s*"internal"|"type"\s*:\s*"server_error"/.test(body)) return { class: "internal-error-in-body", detail: `${status} ${body.slice(0, 300)}` };
  if (status >= 200 && status < 300) return { class: "2xx", detail: String(status) };
  if (status >= 400 && status < 500) return { class: "4xx", detail: String(status) };
  return { class: "1xx-3xx", detail: String(status) };
}

function timeout<T>(ms: number, value: T): { promise: Promise<T>; cancel(): void } {
  let timer: NodeJS.Timeout;
  const promise = new Promise<T>((resolve) => (timer = setTimeout(() => resolve(value), ms)));
  return { promise, cancel: () => clearTimeout(timer) };
}

// ---------------------------------------------------------------------------------------------------------
// HTTP/1.1 through node:http

interface Answer {
  status?: number;
  headers?: Record<string, string | string[] | undefined>;
  trailers?: Record<string, string | string[] | undefined>;
  body: Buffer;
  error?: string;
}

const EMPTY = Buffer.alloc(0);

function headerOf(h: Answer["headers"], name: string): string | undefined {
  const v = h?.[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Enveloped messages (gRPC, gRPC-Web, Connect streaming): flags and payload of each complete one. */
function envelopes(body: Buffer): { flags: number; payload: Buffer }[] {
  const out: { flags: number; payload: Buffer }[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const length = body.readUInt32BE(at + 1);
    if (at + 5 + length > body.length) break;
    out.push({ flags: body[at], payload: body.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}

interface RpcStatus {
  /** gRPC code, or the Connect code name. */
  code: number | string;
  message: string;
}

const CONNECT_CODES: Record<string, number> = { canceled: 1, unknown: 2, invalid_argument: 3, deadline_exceeded: 4, not_found: 5, already_exists: 6, permission_denied: 7, resource_exhausted: 8, failed_precondition: 9, aborted: 10, out_of_range: 11, unimplemented: 12, internal: 13, unavailable: 14, data_loss: 15, unauthenticated: 16 };

/** The RPC status an answer carries: grpc-status (headers or trailers, or gRPC-Web's trailer frame), or a Connect end-stream message. */
function rpcStatusOf(a: Answer): RpcStatus | "missing" | undefined {
  const type = headerOf(a.headers, "content-type") ?? "";
  const grpc = headerOf(a.trailers, "grpc-status") ?? headerOf(a.headers, "grpc-status");
  if (grpc !== undefined) return { code: Number(grpc), message: safeUriDecode(headerOf(a.trailers, "grpc-message") ?? headerOf(a.headers, "grpc-message") ?? "") };
  if (type.startsWith("application/grpc-web")) {
    const body = type.startsWith("application/grpc-web-text") ? Buffer.from(a.body.toString("latin1"), "base64") : a.body;
    const trailer = envelopes(body).find((e) => e.flags & 0x80);
    if (!trailer) return "missing";
    const text = trailer.payload.toString("latin1");
    const code = /grpc-status:\s*(\d+)/i.exec(text)?.[1];
    return code === undefined ? "missing" : { code: Number(code), message: safeUriDecode(/grpc-message:\s*(.*)/i.exec(text)?.[1] ?? "") };
  }
  if (type.startsWith("application/grpc")) return "missing";
  if (type.startsWith("application/connect+")) {
    const end = envelopes(a.body).find((e) => e.flags & 0x02);
    if (!end) return "missing";
    try {
      const parsed = JSON.parse(end.payload.toString("utf8")) as { error?: { code?: string; message?: string } };
      return parsed.error ? { code: parsed.error.code ?? "unknown", message: parsed.error.message ?? "" } : { code: 0, message: "" };
    } catch {
      return { code: "unknown", message: `end-stream message is not JSON: ${end.payload.toString("utf8").slice(0, 100)}` };
    }
  }
  return undefined;
}

function safeUriDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * An RPC status: INTERNAL, UNKNOWN and DATA_LOSS are server faults, except the one the gRPC and Connect
 * protocols prescribe for a message whose compressed flag is set without a declared encoding (INTERNAL).
 */
function classifyRpc(rpc: RpcStatus, c: { auth: AuthAs; expect: FuzzCase["expect"] }): Outcome {
  const code = typeof rpc.code === "number" ? rpc.code : (CONNECT_CODES[rpc.code] ?? 2);
  if (code === 2 || code === 13 || code === 15) {
    if (code === 13 && /received compressed envelope, but do not know how to decompress/.test(rpc.message)) return { class: "rpc-error-status", detail: `${code} (compressed flag without an encoding: INTERNAL by the protocol)` };
    return { class: "rpc-internal", detail: `${code} ${rpc.message.slice(0, 200)}` };
  }
  if (code === 0 && !mayPass(c.auth, c.expect.role)) return { class: "authz", detail: `RPC OK with auth ${c.auth} on an RPC needing ${c.expect.role}` };
  return code === 0 ? { class: "rpc-ok", detail: "0" } : { class: "rpc-error-status", detail: String(code) };
}

/** The class of a complete answer (HTTP status, then the RPC status inside a 200). */
function classifyAnswer(a: Answer & { status: number }, c: { auth: AuthAs; expect: FuzzCase["expect"] }, readAll: boolean): Outcome {
  const rpc = rpcStatusOf(a);
  if (rpc !== undefined && a.status === 200) {
    if (rpc === "missing") {
      if (!readAll) return { class: "rpc-ok", detail: "stream open" };
      return c.expect.answerDue ? { class: "dropped", detail: `200 without an RPC status${a.error ? ` (${a.error})` : ""}` } : { class: "closed-no-answer-due", detail: a.error ?? "" };
    }
    return classifyRpc(rpc, c);
  }
  if (rpc !== undefined && rpc !== "missing" && a.status >= 200 && a.status < 300) return classifyRpc(rpc, c);
  return classifyStatus(a.status, a.body.toString("utf8"), c);
}

/** How long to wait for an answer: an event stream may hold its headers until its first event. */
function waitFor(target: Target, c: HttpCase): number {
  return c.read === "headers" ? 1500 : target.timeoutMs;
}

function h1Request(target: Target, c: HttpCase, headers: Record<string, string>, fresh: boolean): Promise<Answer & { reused: boolean }> {
  return new Promise((resolve) => {
    let req: http.ClientRequest;
    let settled = false;
    const done = (a: Answer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...a, reused: req?.reusedSocket ?? false });
    };
    const timer = setTimeout(() => {
      done({ body: EMPTY, error: "timeout" });
      req?.destroy();
    }, waitFor(target, c));
    try {
      req = http.request(
        { host: "127.0.0.1", port: target.port, method: c.method, path: fillPlaceholders(target, c.path), headers: { ...headers, ...(c.body ? { "content-length": String(c.body.length) } : {}) }, agent: fresh ? false : agent },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          const answer = (more: Partial<Answer>): Answer => ({ status: res.statusCode, headers: res.headers, trailers: res.trailers, body: Buffer.concat(chunks), ...more });
          if (c.read === "headers") {
            done(answer({}));
            res.destroy();
            return;
          }
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size <= 1 << 20) chunks.push(chunk);
          });
          res.on("end", () => done(answer({})));
          res.on("error", (err: NodeJS.ErrnoException) => done(answer({ error: `response ${err.code ?? err.message}` })));
          res.on("aborted", () => done(answer({ error: "response aborted" })));
        },
      );
    } catch (err) {
      settled = true;
      clearTimeout(timer);
      resolve({ body: EMPTY, error: `client-refused ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, reused: false });
      return;
    }
    req.on("error", (err: NodeJS.ErrnoException) => done({ body: EMPTY, error: err.code ?? err.message }));
    if (c.body) req.end(c.body);
    else req.end();
  });
}

async function sendH1(target: Target, c: HttpCase, headers: Record<string, string>): Promise<Answer> {
  const first = await h1Request(target, c, headers, false);
  // A keep-alive connection the server closed just as it was reused: try once on a new one.
  if (first.status === undefined && first.reused && first.error && first.error !== "timeout") return h1Request(target, c, headers, true);
  return first;
}

// ---------------------------------------------------------------------------------------------------------
// HTTP/2 through node:http2

const H2_FORBIDDEN = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te"]);

function connectH2(target: Target, options: http2.ClientSessionOptions = {}): Promise<http2.ClientHttp2Session | string> {
  return new Promise((resolve) => {
    const session = http2.connect(target.url, options);
    const onError = (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message);
    session.once("error", onError);
    session.once("connect", () => {
      session.off("error", onError);
      session.on("error", () => undefined);
      resolve(session);
    });
  });
}

interface H2Answer extends Answer {
  rstCode?: number;
}

function h2Stream(target: Target, session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: Buffer | undefined, opts: { read: "full" | "headers"; end: "end" | "rst" | "hold"; timeoutMs: number }): Promise<H2Answer> {
  return new Promise((resolve) => {
    let settled = false;
    let stream: http2.ClientHttp2Stream;
    const chunks: Buffer[] = [];
    let size = 0;
    let responseHeaders: http2.IncomingHttpHeaders | undefined;
    let trailers: http2.IncomingHttpHeaders | undefined;
    const done = (a: Partial<H2Answer>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ body: Buffer.concat(chunks), headers: responseHeaders, trailers, status: responseHeaders ? Number(responseHeaders[":status"]) : undefined, ...a });
    };
    const timer = setTimeout(() => {
      done({ error: "timeout" });
      if (stream && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    }, opts.timeoutMs);
    try {
      stream = session.request(headers, { endStream: false });
    } catch (err) {
      settled = true;
      clearTimeout(timer);
      resolve({ body: EMPTY, error: `client-refused ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
      return;
    }
    stream.on("response", (h) => {
      responseHeaders = h;
      if (opts.read === "headers") {
        done({});
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= 1 << 20) chunks.push(chunk);
    });
    stream.on("end", () => done({}));
    stream.on("error", (err: NodeJS.ErrnoException) => done({ error: err.code ?? err.message, rstCode: stream.rstCode }));
    stream.on("close", () => done(responseHeaders ? {} : { error: `closed without an answer (rst ${stream.rstCode})`, rstCode: stream.rstCode }));
    if (body && body.length > 0) stream.write(body);
    if (opts.end === "end") stream.end();
    else if (opts.end === "rst") setImmediate(() => stream.close(http2.constants.NGHTTP2_CANCEL));
    else setTimeout(() => done({ error: "client held the stream open" }), 100);
  });
}

async function sendH2(target: Target, c: HttpCase, headers: Record<string, string>): Promise<H2Answer> {
  const session = await connectH2(target);
  if (typeof session === "string") return { body: EMPTY, error: session };
  try {
    const h2Headers: http2.OutgoingHttpHeaders = { ":method": c.method, ":path": fillPlaceholders(target, c.path) };
    for (const [k, v] of Object.entries(headers)) {
      if (k === "host") h2Headers[":authority"] = v;
      else if (!H2_FORBIDDEN.has(k)) h2Headers[k] = v;
    }
    return await h2Stream(target, session, h2Headers, c.body, { read: c.read, end: "end", timeoutMs: waitFor(target, c) });
  } finally {
    session.destroy();
  }
}

async function sendHttp(target: Target, c: HttpCase): Promise<Outcome> {
  const headers = withAuth(target, c, c.headers, c.authHeader);
  const a: H2Answer = c.transport === "h1" ? await sendH1(target, c, headers) : await sendH2(target, c, headers);
  noteRequestId(target, headerOf(a.headers, "x-request-id"));
  if (a.error?.startsWith("client-refused")) return { class: "client-refused", detail: a.error };
  if (a.status === undefined) {
    if (a.error === "timeout") return c.read === "headers" ? { class: "closed-no-answer-due", detail: "event stream, no headers yet" } : { class: "timeout", detail: `no answer in ${target.timeoutMs} ms` };
    // HTTP/2: a request with an empty :authority is malformed, and a stream reset (PROTOCOL_ERROR) is the answer the protocol prescribes.
    if (c.transport === "h2" && c.headers.host === "" && (a as H2Answer).rstCode === http2.constants.NGHTTP2_PROTOCOL_ERROR) return { class: "refused-by-protocol", detail: "empty :authority, stream reset (PROTOCOL_ERROR)" };
    return c.expect.answerDue ? { class: "dropped", detail: a.error ?? "no answer" } : { class: "closed-no-answer-due", detail: a.error ?? "" };
  }
  const outcome = classifyAnswer({ ...a, status: a.status }, c, c.read === "full");
  // A status came, but the body broke off: an answer cut short.
  if (a.error && c.read === "full" && !isFailure(outcome.class) && a.status < 400) {
    return a.error === "timeout" ? { class: "timeout", detail: `${a.status}, then the body stalled` } : { class: "dropped", detail: `${a.status}, then ${a.error}` };
  }
  return outcome;
}

// ---------------------------------------------------------------------------------------------------------
// gRPC over HTTP/2

async function sendGrpc(target: Target, c: GrpcCase): Promise<Outcome> {
  const session = await connectH2(target);
  if (typeof session === "string") return { class: "dropped", detail: `connect: ${session}` };
  try {
    const headers = withAuth(target, c, { ":method": "POST", ":path": c.path, ...c.headers } as Record<string, string>, "authorization");
    const serverStreaming = c.path.endsWith("/WatchEvents");
    const a = await h2Stream(target, session, headers, c.body, { read: "full", end: c.end, timeoutMs: serverStreaming ? 1500 : target.timeoutMs });
    if (a.error?.startsWith("client-refused")) return { class: "client-refused", detail: a.error };
    if (a.status === undefined) {
      if (a.error === "timeout") return serverStreaming ? { class: "closed-no-answer-due", detail: "no headers yet" } : { class: "timeout", detail: `no answer in ${target.timeoutMs} ms` };
      return c.expect.answerDue ? { class: "dropped", detail: a.error ?? "no answer" } : { class: "closed-no-answer-due", detail: a.error ?? "" };
    }
    // A server stream (events) stays open: its headers are the answer.
    return classifyAnswer({ ...a, status: a.status }, c, !(serverStreaming && a.error === "timeout") && c.end === "end");
  } finally {
    session.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Raw HTTP/1.1

async function sendRaw1(target: Target, c: Raw1Case): Promise<Outcome> {
  const steps = c.steps.map((s) => {
    const text = s.data.toString("latin1");
    if (!text.includes("{{")) return s;
    return { ...s, data: Buffer.from(text.replace(/\{\{KEY:(admin|reader|inference)\}\}/g, (_m, role: "admin" | "reader" | "inference") => target.keys[role]), "latin1") };
  });
  const res = await rawHttp1(target.port, steps, c.after, c.responsesDue, Math.min(target.timeoutMs, 10_000));
  for (let i = 0; i < res.statuses.length; i++) {
    const outcome = classifyStatus(res.statuses[i], res.bodies[i], { auth: "none", expect: c.expect });
    if (isFailure(outcome.class)) return outcome;
  }
  if (res.statuses.length < c.responsesDue) {
    if (res.ended === "timeout") return { class: "timeout", detail: `${res.statuses.length} of ${c.responsesDue} answers in ${Math.min(target.timeoutMs, 10_000)} ms` };
    return { class: "dropped", detail: `${res.statuses.length} of ${c.responsesDue} answers, then ${res.ended}${res.error ? ` (${res.error})` : ""}` };
  }
  if (res.statuses.length === 0) return { class: "closed-no-answer-due", detail: res.ended };
  const last = res.statuses[res.statuses.length - 1];
  return classifyStatus(last, res.bodies[res.bodies.length - 1], { auth: "none", expect: c.expect });
}

// ---------------------------------------------------------------------------------------------------------
// HTTP/2 oddities

const CHAT = JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 2, stream: true });

async function sendH2Odd(target: Target, c: H2Case): Promise<Outcome> {
  if (c.variant === "raw-frames" || c.variant === "continuation-flood") {
    const res = await rawHttp2(target.port, c.frames ?? Buffer.alloc(0), 400);
    return { class: "refused-by-protocol", detail: res.goaway !== undefined ? `GOAWAY ${res.goaway}` : res.closed ? `closed${res.error ? ` (${res.error})` : ""}` : "left open" };
  }
  const settings: http2.Settings = c.variant === "tiny-window" ? { initialWindowSize: [1, 16, 100][c.n % 3] } : {};
  const session = await connectH2(target, { settings, maxHeaderListPairs: 100_000, maxSendHeaderBlockLength: 1 << 20, peerMaxConcurrentStreams: 1000 } as http2.ClientSessionOptions);
  if (typeof session === "string") return { class: "dropped", detail: `connect: ${session}` };
  const admin = `Bearer ${target.keys.admin}`;
  const get = (path: string, extra: http2.OutgoingHttpHeaders = {}) => h2Stream(target, session, { ":method": "GET", ":path": path, authorization: admin, ...extra }, undefined, { read: "full", end: "end", timeoutMs: target.timeoutMs });
  try {
    switch (c.variant) {
      case "rapid-reset":
      case "reset-generations": {
        const gen = c.variant === "reset-generations";
        const streams: http2.ClientHttp2Stream[] = [];
        for (let i = 0; i < c.n && !session.destroyed; i++) {
          try {
            const s = session.request(gen ? { ":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json", authorization: admin } : { ":method": "GET", ":path": "/healthz" }, { endStream: !gen });
            s.on("error", () => undefined);
            if (gen) s.end(CHAT);
            streams.push(s);
            if (!gen) s.close(http2.constants.NGHTTP2_CANCEL);
          } catch {
            break;
          }
        }
        if (gen) {
          await new Promise((r) => setTimeout(r, 5 + (c.n % 30)));
          for (const s of streams) if (!s.destroyed) s.close(http2.constants.NGHTTP2_CANCEL);
        }
        return { class: "closed-no-answer-due", detail: `${streams.length} streams reset` };
      }
      case "half-closed-post": {
        const statuses: number[] = [];
        for (let i = 0; i < c.n; i++) {
          const path = ["/v1/chat/completions", "/v1/completions", "/api/v1/models", "/smmf.v1.InferenceService/CountTokens"][i % 4];
          const a = await h2Stream(target, session, { ":method": "POST", ":path": path, "content-type": "application/json", authorization: admin }, undefined, { read: "full", end: "end", timeoutMs: target.timeoutMs });
          if (a.status === undefined) return a.error === "timeout" ? { class: "timeout", detail: `POST ${path} with no body` } : { class: "dropped", detail: `POST ${path} with no body: ${a.error}` };
          const outcome = classifyStatus(a.status, a.body.toString("utf8"), { auth: "admin", expect: c.expect });
          if (outcome.class !== "4xx" && outcome.class !== "2xx") return outcome;
          statuses.push(a.status);
        }
        return { class: "4xx", detail: statuses.join(",") };
      }
      case "huge-headers":
      case "many-headers": {
        const extra: http2.OutgoingHttpHeaders = {};
        if (c.variant === "huge-headers") extra["x-huge"] = "h".repeat(c.n);
        else for (let i = 0; i < c.n; i++) extra[`x-h${i}`] = "v";
        const a = await get("/healthz", extra);
        if (a.status !== undefined) return classifyStatus(a.status, a.body.toString("utf8"), { auth: "admin", expect: c.expect });
        if (a.error?.startsWith("client-refused")) return { class: "client-refused", detail: a.error };
        if (a.error === "timeout") return { class: "timeout", detail: c.label };
        return { class: "refused-by-protocol", detail: a.error ?? "" };
      }
      case "over-stream-cap": {
        const answers = await Promise.all(Array.from({ length: c.n }, () => get("/healthz")));
        for (const a of answers) {
          if (a.status !== undefined && a.status !== 200) return classifyStatus(a.status, a.body.toString("utf8"), { auth: "admin", expect: c.expect });
          if (a.error === "timeout") return { class: "timeout", detail: c.label };
        }
        const answered = answers.filter((a) => a.status === 200).length;
        return { class: answered === c.n ? "2xx" : "refused-by-protocol", detail: `${answered} of ${c.n} answered` };
      }
      case "client-goaway":
      case "destroy-mid-stream": {
        for (let i = 0; i < c.n; i++) {
          const s = session.request({ ":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json", authorization: admin });
          s.on("error", () => undefined);
          s.end(CHAT);
        }
        await new Promise((r) => setTimeout(r, 10 + (c.index % 20)));
        if (c.variant === "client-goaway") session.goaway(http2.constants.NGHTTP2_NO_ERROR);
        session.destroy();
        return { class: "closed-no-answer-due", detail: c.variant };
      }
      case "tiny-window": {
        const a = await get("/v1/models");
        if (a.status === undefined) return a.error === "timeout" ? { class: "timeout", detail: c.label } : { class: "dropped", detail: a.error ?? "" };
        return classifyStatus(a.status, a.body.toString("utf8"), { auth: "admin", expect: c.expect });
      }
      default:
        return { class: "client-refused", detail: `unknown variant ${c.variant as string}` };
    }
  } finally {
    if (!session.destroyed) session.destroy();
  }
}

export async function sendCase(target: Target, c: FuzzCase): Promise<Outcome> {
  switch (c.kind) {
    case "http":
      return sendHttp(target, c);
    case "grpc":
      return sendGrpc(target, c);
    case "raw1":
      return sendRaw1(target, c);
    case "h2":
      return sendH2Odd(target, c);
  }
}

/** Races `sendCase` with a hard deadline, so a stuck case cannot stall a batch. */
export async function sendWithDeadline(target: Target, c: FuzzCase): Promise<Outcome> {
  const deadline = timeout<Outcome>(target.timeoutMs + 5_000, { class: "timeout", detail: "the case did not finish" });
  try {
    return await Promise.race([sendCase(target, c).catch((err: unknown): Outcome => ({ class: "fuzzer-error", detail: `fuzzer error: ${(err as Error)?.stack ?? String(err)}` })), deadline.promise]);
  } finally {
    deadline.cancel();
  }
}
