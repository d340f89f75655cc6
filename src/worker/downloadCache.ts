import { readdirSync, rmSync, statSync, utimesSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import type { Logger } from "../telemetry/createLogger.js";

/**
 * The worker's download cache: GGUF files downloaded from http(s) sources, kept in one folder, bounded in
 * bytes. A file is "in use" while it is pinned (an instance loaded from it, or a load or estimate that needs
 * it); files in use are never deleted. The others go least recently used first whenever the cache holds
 * more than its bound: a file's modification time is its last use (set when a load takes it and when the
 * last user lets it go). State is per process (module level), shared by every worker in it; a cache folder
 * is meant for one worker process.
 */

/** Downloaded files' names: 32 hex digits of the URL's SHA-256. */
const CACHED_FILE = /^[0-9a-f]{32}\.gguf$/;
/** Temporary files of downloads: `<name>.gguf.part-<8 hex>`. */
const PART_FILE = /^[0-9a-f]{32}\.gguf\.part-[0-9a-f]{8}$/;

/** Users of each file, by absolute path. */
const pins = new Map<string, number>();
/** Bytes that downloads in flight will add (as their Content-Length announced), by their temporary file. */
const incoming = new Map<string, { dir: string; bytes: number }>();

/** Marks `path` in use until the returned function is called (once; later calls do nothing). */
export function pinFile(path: string): () => void {
  const key = resolve(path);
  pins.set(key, (pins.get(key) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const n = (pins.get(key) ?? 1) - 1;
    if (n > 0) pins.set(key, n);
    else pins.delete(key);
  };
}

/** Whether something uses the file at `path`. */
export function isPinned(path: string): boolean {
  return pins.has(resolve(path));
}

/** Records a use of the file now (its modification time, which eviction orders by). */
export function touchFile(path: string): void {
  const now = new Date();
  try {
    utimesSync(path, now, now);
  } catch {
    // gone, or not ours to touch: nothing to record
  }
}

/** A download in flight: its temporary file is kept from removeStaleParts, and the bytes it announced count against its cache. */
export interface TrackedDownload {
  /** The bytes the download will add (its Content-Length). */
  announce(bytes: number): void;
  /** The download is over (done or failed). */
  end(): void;
}

/** Tracks a download into the temporary file `part`. */
export function trackDownload(part: string): TrackedDownload {
  const key = resolve(part);
  const entry = { dir: resolve(part, ".."), bytes: 0 };
  incoming.set(key, entry);
  return {
    announce: (bytes) => void (entry.bytes = bytes),
    end: () => void incoming.delete(key),
  };
}

export interface CachedFile {
  path: string;
  bytes: number;
  /** Last use, ms since the epoch. */
  usedAt: number;
}

/** The downloaded files in `dir` (temporary files excluded); none when the folder does not exist. */
export function cachedFiles(dir: string): CachedFile[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const files: CachedFile[] = [];
  for (const name of names) {
    if (!CACHED_FILE.test(name)) continue;
    const path = resolve(dir, name);
    try {
      const stat = statSync(path);
      if (stat.isFile()) files.push({ path, bytes: stat.size, usedAt: stat.mtimeMs });
    } catch {
      // deleted meanwhile
    }
  }
  return files;
}

export interface EvictionResult {
  /** Files deleted, least recently used first. */
  removed: string[];
  /** Bytes the cache holds afterwards, downloads in flight included. */
  bytes: number;
}

/**
 * Brings the cache in `dir` within `maxBytes` if it can: while its files plus the downloads in flight hold
 * more, deletes the least recently used file that nothing uses. Files in use stay even when that leaves the
 * cache over its bound (logged); they become candidates once let go. Synchronous, so that no pin can be
 * taken between the check and the deletion.
 */
export function evictDownloads(dir: string, maxBytes: number, logger?: Logger): EvictionResult {
  const root = resolve(dir);
  const files = cachedFiles(root).sort((a, b) => a.usedAt - b.usedAt || a.path.localeCompare(b.path));
  let bytes = files.reduce((n, f) => n + f.bytes, 0);
  for (const download of incoming.values()) if (download.dir === root) bytes += download.bytes;
  const removed: string[] = [];
  for (const file of files) {
    if (bytes <= maxBytes) break;
    if (pins.has(file.path)) continue;
    try {
      rmSync(file.path, { force: true });
    } catch (err) {
      logger?.warn("could not delete a cached model file", { file: basename(file.path), error: (err as Error).message });
      continue;
    }
    bytes -= file.bytes;
    removed.push(file.path);
  }
  if (removed.length > 0) logger?.info("evicted cached model files", { files: removed.map((p) => basename(p)), cacheBytes: bytes, maxBytes });
  if (bytes > maxBytes) logger?.warn("the download cache is over its bound: the files left are in use", { cacheBytes: bytes, maxBytes });
  return { removed, bytes };
}

/** Deletes temporary files of downloads that are not running (left by a crash or a kill); returns their paths. */
export function removeStaleParts(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const path = join(resolve(dir), name);
    if (!PART_FILE.test(name) || incoming.has(path)) continue;
    rmSync(path, { force: true });
    removed.push(path);
  }
  return removed;
}
