import { readdirSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AnyResponse } from "./sse.js";
import type { Req } from "./startServer.js";

const TYPES: Record<string, string> = { html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8", svg: "image/svg+xml" };

/** Files of the console's libraries, as the build copies them and where their packages hold them. */
const VENDOR: [string, string][] = [
  ["uPlot.iife.min.js", "uplot/dist/uPlot.iife.min.js"],
  ["uPlot.min.css", "uplot/dist/uPlot.min.css"],
];

/** The console's pages talk only to the server that serves them, and cannot be framed. */
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
}

/**
 * The web console's static files (src/console, copied to dist/console by the build), read and compressed once
 * at start, served under /ui/ by gateways and controllers. They hold no data: every page asks the API for it
 * with the key the user signs in with, so they are open like /healthz.
 */
export function createConsoleHandler(dir = fileURLToPath(new URL("../console/", import.meta.url))): (req: Req, res: AnyResponse, path: string) => boolean {
  const assets = new Map<string, Asset>();
  const add = (name: string, file: string) => {
    const type = TYPES[name.split(".").pop() ?? ""];
    if (!type) return;
    const body = readFileSync(file);
    assets.set(name, { type, body, gzip: gzipSync(body, { level: 9 }) });
  };
  for (const name of readdirSync(dir)) add(name, join(dir, name));
  // The charting library: copied beside the console by the build; run from the sources, read from its package.
  for (const [name, file] of VENDOR) {
    if (assets.has(name)) continue;
    try {
      add(name, createRequire(import.meta.url).resolve(file));
    } catch {
      // Neither built nor installed: the console works without its charts.
    }
  }
  return (req, res, path) => {
    if (path !== "/ui" && !path.startsWith("/ui/")) return false;
    if (path === "/ui") {
      res.writeHead(308, { location: "/ui/" });
      res.end();
      return true;
    }
    const name = path === "/ui/" ? "index.html" : path.slice("/ui/".length);
    const asset = assets.get(name);
    if (!asset || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(asset ? 405 : 404, { "content-type": "text/plain; charset=utf-8", ...SECURITY_HEADERS });
      res.end(asset ? "Method not allowed" : "Not found");
      return true;
    }
    const gzip = /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
    const body = gzip ? asset.gzip : asset.body;
    res.writeHead(200, { "content-type": asset.type, "content-length": String(body.length), "cache-control": "no-cache", vary: "accept-encoding", ...(gzip ? { "content-encoding": "gzip" } : {}), ...SECURITY_HEADERS });
    if (req.method === "HEAD") res.end();
    else res.end(body);
    return true;
  };
}
