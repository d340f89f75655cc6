import { createHash, randomUUID } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { SmmfError } from "../errors/SmmfError.js";

const downloads = new Map<string, Promise<string>>();

/** Whether a source is an http(s) URL. */
export function isRemoteSource(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

/**
 * The local copy of a GGUF file at an http(s) URL: downloaded once into `cacheDir` (named by the URL's
 * SHA-256), then reused. The file is written under a temporary name and moved into place only when it is
 * complete and starts with the GGUF magic, so a broken download never leaves a file that looks whole.
 * Concurrent calls for one URL share one download.
 */
export function fetchModelFile(url: string, cacheDir: string, workerId: string): Promise<string> {
  const path = join(cacheDir, `${createHash("sha256").update(url).digest("hex").slice(0, 32)}.gguf`);
  if (existsSync(path)) return Promise.resolve(path);
  let pending = downloads.get(path);
  if (!pending) {
    pending = download(url, path, workerId).finally(() => downloads.delete(path));
    downloads.set(path, pending);
  }
  return pending;
}

async function download(url: string, path: string, workerId: string): Promise<string> {
  const shown = url.replace(/\?.*$/, "");
  const part = `${path}.part-${randomUUID().slice(0, 8)}`;
  try {
    mkdirSync(join(path, ".."), { recursive: true });
    let res: Response;
    try {
      res = await fetch(url, { redirect: "follow" });
    } catch (err) {
      throw new SmmfError("failed_precondition", `worker ${workerId} cannot download ${shown}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`, { param: "source" });
    }
    if (!res.ok || !res.body) throw new SmmfError("failed_precondition", `worker ${workerId} cannot download ${shown}: HTTP ${res.status}`, { param: "source" });
    await pipeline(Readable.fromWeb(res.body as import("node:stream/web").ReadableStream), createWriteStream(part));
    const file = await open(part, "r");
    const magic = Buffer.alloc(4);
    await file.read(magic, 0, 4, 0);
    await file.close();
    if (magic.toString("latin1") !== "GGUF") throw new SmmfError("failed_precondition", `${shown} is not a GGUF file`, { param: "source" });
    renameSync(part, path);
    return path;
  } catch (err) {
    rmSync(part, { force: true });
    if (err instanceof SmmfError) throw err;
    throw new SmmfError("failed_precondition", `worker ${workerId} could not download ${shown}: ${(err as Error).message}`, { param: "source" });
  }
}
