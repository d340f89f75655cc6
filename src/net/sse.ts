import type { ServerResponse } from "node:http";
import { untilDrained } from "./untilDrained.js";
import type { Http2ServerResponse } from "node:http2";

export type AnyResponse = ServerResponse | Http2ServerResponse;

export function startSse(res: AnyResponse, headers: Record<string, string>): void {
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no", ...headers });
  (res as ServerResponse).flushHeaders?.();
}

/** Writes `data:` events (one, or one per array element) in one write; waits while the socket's buffer is full. */
export async function writeSse(res: AnyResponse, data: unknown): Promise<void> {
  const event = (d: unknown) => `data: ${typeof d === "string" ? d : JSON.stringify(d)}\n\n`;
  const payload = Array.isArray(data) ? data.map(event).join("") : event(data);
  const ok = (res as ServerResponse).write(payload);
  if (!ok && !res.destroyed) await untilDrained(res);
}

/** Writes named events (`event:` and `data:` lines, as Anthropic's stream has them) in one write; waits while the socket's buffer is full. */
export async function writeSseEvents(res: AnyResponse, events: readonly { type: string }[]): Promise<void> {
  let payload = "";
  for (const e of events) payload += `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
  const ok = (res as ServerResponse).write(payload);
  if (!ok && !res.destroyed) await untilDrained(res);
}

export function sendJson(res: AnyResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}
