import { isIP } from "node:net";

/** Whether a listen host is a loopback address or name (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h === "::1") return true;
  return isIP(h) === 4 && h.startsWith("127.");
}

/**
 * Whether a request's Host header names this machine's loopback (a loopback address or `localhost`, any port).
 * A server listening on loopback answers only such requests: a web page whose own name resolves to 127.0.0.1
 * (DNS rebinding) sends its own name and is refused.
 */
export function isLoopbackHostHeader(host: string | undefined): boolean {
  if (!host) return true; // HTTP/1.0 and HTTP/2 clients that send :authority only: nothing a browser does
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(host.trim());
  if (!m) return false;
  const name = m[1].toLowerCase();
  return isLoopbackHost(name) || name.endsWith(".localhost");
}
