import { createHash, randomUUID } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, openSync, renameSync, rmSync } from "node:fs";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { join } from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { SmmfError } from "../errors/SmmfError.js";
import { checkOutboundUrl, checkUrlHost, shownUrl, type CheckedUrl, type LookupAll } from "../net/checkOutboundUrl.js";
import type { Logger } from "../telemetry/createLogger.js";
import { evictDownloads, pinFile, touchFile, trackDownload } from "./downloadCache.js";

/** Largest download by default: 20 GiB. */
export const DEFAULT_MAX_DOWNLOAD_BYTES = 20 * 1024 ** 3;
/** Longest download by default: 30 minutes. */
export const DEFAULT_DOWNLOAD_TIMEOUT_MS = 30 * 60_000;
/** Redirects followed at most. */
export const MAX_REDIRECTS = 5;

export interface FetchModelOptions {
  /** Hosts downloads may come from (exact names or `*.suffix`); default none: http(s) sources are refused. */
  allowedHosts?: readonly string[];
  /** Lets loopback, private and link-local addresses through (see checkOutboundUrl); default false. */
  allowPrivate?: boolean;
  /** Largest file, in bytes; default 20 GiB. */
  maxBytes?: number;
  /** Longest the whole download (redirects included) may take, in ms; default 30 minutes. */
  timeoutMs?: number;
  /** Name resolution, for tests; default dns.lookup. */
  lookup?: LookupAll;
  /**
   * Bound of the download cache (`cacheDir`), in bytes; default none. Before a download starts and after it
   * ends, unused files are evicted (least recently used first) while the cache holds more; a file larger
   * than the whole bound is refused.
   */
  cacheMaxBytes?: number;
  /** Where evictions are logged. */
  logger?: Logger;
}

/** A downloaded model file in use: `release` once the instance (or estimate) that uses it is done. */
export interface AcquiredModelFile {
  path: string;
  release(): void;
}

const downloads = new Map<string, Promise<string>>();

/** Whether a source is an http(s) URL. */
export function isRemoteSource(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

/**
 * The local copy of a GGUF file at an http(s) URL: downloaded once into `cacheDir` (named by the URL's
 * SHA-256), then reused. Only from allow-listed hosts: each URL (the first and every redirect, at most 5) is
 * checked with checkOutboundUrl before anything connects, and the connection goes to the address checked.
 * The file is written under a temporary name, cut off past `maxBytes` or `timeoutMs`, and moved into place
 * only when it is complete and starts with the GGUF magic, so a broken download never leaves a file that
 * looks whole. Errors never carry what the server answered beyond its status. Concurrent calls for one URL
 * share one download. With `cacheMaxBytes`, the cache folder is kept within that bound (see downloadCache):
 * unused files are evicted before the download (room for its Content-Length) and after it; a file larger than
 * the bound is refused, by its Content-Length or as soon as it passes it.
 */
export function fetchModelFile(url: string, cacheDir: string, workerId: string, options: FetchModelOptions = {}): Promise<string> {
  const policy = { allowedHosts: options.allowedHosts ?? [], allowPrivate: options.allowPrivate ?? false };
  try {
    // A cached copy is used only while its host is still allowed.
    checkUrlHost(url, policy);
  } catch (err) {
    return Promise.reject(err);
  }
  const path = cachePathOf(url, cacheDir);
  if (existsSync(path)) return Promise.resolve(path);
  let pending = downloads.get(path);
  if (!pending) {
    pending = download(url, path, workerId, { ...options, ...policy }).finally(() => downloads.delete(path));
    downloads.set(path, pending);
  }
  return pending;
}

/** Where the download of `url` is kept in `cacheDir`: named by the URL's SHA-256. */
export function cachePathOf(url: string, cacheDir: string): string {
  return join(cacheDir, `${createHash("sha256").update(url).digest("hex").slice(0, 32)}.gguf`);
}

/**
 * fetchModelFile, with the file marked in use (so that no eviction deletes it) from before the download
 * until `release`; its use is recorded when it is taken and when it is released (the cache evicts least
 * recently used first).
 */
export async function acquireModelFile(url: string, cacheDir: string, workerId: string, options: FetchModelOptions = {}): Promise<AcquiredModelFile> {
  const release = pinFile(cachePathOf(url, cacheDir));
  let path: string;
  try {
    path = await fetchModelFile(url, cacheDir, workerId, options);
  } catch (err) {
    release();
    throw err;
  }
  touchFile(path);
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      touchFile(path);
      release();
    },
  };
}

/** A `lookup` for http(s).request that answers the checked address and nothing else. */
function pinnedLookup(checked: CheckedUrl): LookupFunction {
  return ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options?.all) callback(null, [{ address: checked.address, family: checked.family }]);
    else callback(null, checked.address, checked.family);
  }) as LookupFunction;
}

/** One GET to the checked address; resolves with the response head. */
function get(checked: CheckedUrl, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolvePromise, reject) => {
    const request = (checked.url.protocol === "https:" ? https : http).request(checked.url, {
      method: "GET",
      lookup: pinnedLookup(checked),
      // An IP literal host is connected to as it is (it was checked); a name through the pinned lookup.
      agent: false,
      signal,
      headers: { accept: "application/octet-stream, */*", "accept-encoding": "identity" },
    });
    request.once("response", resolvePromise);
    request.once("error", reject);
    request.end();
  });
}

class DownloadError extends Error {}

/** Counts bytes against the caps (the largest download, the cache's bound) and checks the GGUF magic as soon as 4 bytes have come. */
class GgufGuard extends Transform {
  private seen = 0;
  private head = Buffer.alloc(0);
  constructor(
    private readonly maxBytes: number,
    private readonly cacheMaxBytes: number,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.maxBytes) return callback(new DownloadError("too large"));
    if (this.seen > this.cacheMaxBytes) return callback(new DownloadError("larger than the cache"));
    if (this.head.length < 4) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, 4 - this.head.length)]);
      if (this.head.length === 4 && this.head.toString("latin1") !== "GGUF") return callback(new DownloadError("not gguf"));
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    callback(this.head.length === 4 ? null : new DownloadError("not gguf"));
  }
}

async function download(url: string, path: string, workerId: string, options: FetchModelOptions & { allowedHosts: readonly string[]; allowPrivate: boolean }): Promise<string> {
  const shown = shownUrl(url);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_DOWNLOAD_BYTES;
  const timeoutMs = options.timeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS;
  const cacheMaxBytes = options.cacheMaxBytes ?? Infinity;
  const cacheDir = join(path, "..");
  const part = `${path}.part-${randomUUID().slice(0, 8)}`;
  // In use while it downloads (no eviction takes it once it is in place); the temporary file is ours.
  const unpin = pinFile(path);
  const tracked = trackDownload(part);
  const abort = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    abort.abort(new DownloadError("timeout"));
  }, timeoutMs);
  const cannot = (why: string) => new SmmfError("failed_precondition", `worker ${workerId} cannot download ${shown}: ${why}`, { param: "source" });
  const tooLargeForCache = (bytes?: number) =>
    cannot(`the file${bytes === undefined ? "" : ` (${bytes} bytes)`} is larger than the worker's whole download cache of ${cacheMaxBytes} bytes`);
  try {
    let target = url;
    let response: IncomingMessage | undefined;
    for (let redirects = 0; ; redirects++) {
      const checked = await checkOutboundUrl(target, options, options.lookup);
      if (abort.signal.aborted) throw new DownloadError("timeout");
      response = await get(checked, abort.signal);
      const status = response.statusCode ?? 0;
      if (![301, 302, 303, 307, 308].includes(status)) break;
      const location = response.headers.location;
      response.destroy();
      if (!location) throw cannot(`HTTP ${status} without a Location`);
      if (redirects >= MAX_REDIRECTS) throw cannot(`more than ${MAX_REDIRECTS} redirects`);
      try {
        target = new URL(location, checked.url).href;
      } catch {
        throw cannot(`HTTP ${status} to an invalid Location`);
      }
    }
    if (response.statusCode !== 200) {
      response.destroy();
      throw cannot(`HTTP ${response.statusCode}`);
    }
    const length = Number(response.headers["content-length"]);
    if (Number.isFinite(length) && length > maxBytes) {
      response.destroy();
      throw cannot(`the file is larger than the worker's limit of ${maxBytes} bytes`);
    }
    if (Number.isFinite(length) && length > cacheMaxBytes) {
      response.destroy();
      throw tooLargeForCache(length);
    }
    // Room for it: unused files go, least recently used first (what it announced counts as held already).
    if (Number.isFinite(length)) tracked.announce(length);
    if (Number.isFinite(cacheMaxBytes)) evictDownloads(cacheDir, cacheMaxBytes, options.logger);
    mkdirSync(cacheDir, { recursive: true });
    try {
      // Opened here, at once: a stream that opened its file later could create it after a failure removed it.
      await pipeline(response, new GgufGuard(maxBytes, cacheMaxBytes), createWriteStream(part, { fd: openSync(part, "w") }), { signal: abort.signal });
    } catch (err) {
      const why = err instanceof DownloadError ? err.message : timedOut ? "timeout" : "";
      if (why === "too large") throw cannot(`the file is larger than the worker's limit of ${maxBytes} bytes`);
      if (why === "larger than the cache") throw tooLargeForCache();
      if (why === "not gguf") throw new SmmfError("failed_precondition", `${shown} is not a GGUF file`, { param: "source" });
      throw err;
    }
    renameSync(part, path);
    tracked.end();
    // Once it is in place, the cache may be over its bound (a download without a length, or several at once).
    if (Number.isFinite(cacheMaxBytes)) evictDownloads(cacheDir, cacheMaxBytes, options.logger);
    return path;
  } catch (err) {
    if (err instanceof SmmfError) throw err;
    if (timedOut) throw cannot(`no complete file within ${timeoutMs} ms`);
    const code = (err as NodeJS.ErrnoException).code;
    throw cannot(code ?? "the connection failed");
  } finally {
    clearTimeout(timer);
    abort.abort();
    rmSync(part, { force: true });
    tracked.end();
    unpin();
  }
}
