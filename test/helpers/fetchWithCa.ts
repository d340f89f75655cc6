import https from "node:https";
import { Readable } from "node:stream";

/**
 * A `fetch` that trusts `ca` (PEM) for https (Node 20's fetch takes no CA but the process's): for the OpenAI SDK
 * (its `fetch` option) and plain calls against a TLS listener with a test CA. HTTP/1.1 over node:https.
 */
export function fetchWithCa(ca: string | Buffer, clientCert?: { cert: string | Buffer; key: string | Buffer }): typeof fetch {
  const agent = new https.Agent({ ca, keepAlive: true, ...clientCert });
  return (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    const headers: Record<string, string> = {};
    new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined)).forEach((value, name) => (headers[name] = value));
    let body: Buffer | undefined;
    if (init.body !== undefined && init.body !== null) body = Buffer.from(await new Response(init.body as ConstructorParameters<typeof Response>[0]).arrayBuffer());
    return new Promise<Response>((resolve, reject) => {
      const req = https.request(url, { method: init.method ?? "GET", headers, agent }, (res) => {
        const responseHeaders = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          if (value === undefined) continue;
          for (const v of Array.isArray(value) ? value : [value]) responseHeaders.append(name, v);
        }
        const status = res.statusCode ?? 0;
        const stream = status === 204 || status === 304 || init.method === "HEAD" ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
        if (!stream) res.resume();
        resolve(new Response(stream, { status, statusText: res.statusMessage, headers: responseHeaders }));
      });
      req.on("error", reject);
      init.signal?.addEventListener("abort", () => req.destroy(new Error("aborted")), { once: true });
      req.end(body);
    });
  }) as typeof fetch;
}
