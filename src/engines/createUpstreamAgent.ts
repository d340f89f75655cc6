import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";

export interface UpstreamPoolSettings {
  /** Keep connections open between requests (false: a new connection, and TLS handshake, per request). */
  keepAlive: boolean;
  /** Most connections open to the upstream at once; more requests wait for a free one. */
  poolSize: number;
  /** How long an idle connection is kept (less when the upstream's `Keep-Alive: timeout=N` says so). */
  idleTimeoutMs: number;
}

/**
 * An upstream instance's connection pool: keep-alive connections to its one origin, reused across requests
 * (streaming and not), the most recently used first (so that a quiet period lets the rest time out), up to
 * `poolSize` at once. Over HTTPS, new connections resume the TLS session of earlier ones (the agent's session
 * cache) instead of a full handshake.
 */
export function createUpstreamAgent(protocol: string, s: UpstreamPoolSettings): HttpAgent | HttpsAgent {
  const options = { keepAlive: s.keepAlive, maxSockets: s.poolSize, maxFreeSockets: s.poolSize, timeout: s.idleTimeoutMs, scheduling: "lifo" as const };
  return protocol === "https:" ? new HttpsAgent(options) : new HttpAgent(options);
}
