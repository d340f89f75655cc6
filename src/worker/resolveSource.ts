import { closeSync, openSync, readSync, realpathSync, statSync } from "node:fs";
import { isAbsolute, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { SmmfError } from "../errors/SmmfError.js";

/** The real path of `path` (symbolic links followed), or undefined when there is none. */
function realPath(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** Whether `path` is `root` or lies under it (both real paths). */
function within(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** Whether the file starts with the GGUF magic; undefined when it cannot be read. */
function startsWithGgufMagic(path: string): boolean | undefined {
  const magic = Buffer.alloc(4);
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    return readSync(fd, magic, 0, 4, 0) === 4 && magic.toString("latin1") === "GGUF";
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The local file a model source names: an absolute path, a path relative to the worker's model directory,
 * or a file:// URI. The file's real path (symbolic links followed) must be a regular file inside the model
 * directory or one of `allowedDirs` (an entry may also name a single file, which allows exactly that file).
 * Anything else — outside those folders, missing, unreadable, not a regular file — fails with the same
 * failed_precondition message, which tells neither whether the file exists nor what it holds. A file that is
 * allowed but is not a GGUF file says so. Returns the real path.
 */
export function resolveSource(source: string, modelDir: string, workerId: string, allowedDirs: readonly string[] = []): string {
  if (!source) throw new SmmfError("invalid_argument", "'source' is required: the path of a GGUF file", { param: "source" });
  let path: string;
  if (source.startsWith("file://")) {
    try {
      path = fileURLToPath(source);
    } catch (err) {
      throw new SmmfError("invalid_argument", `'source' is not a valid file URI: ${(err as Error).message}`, { param: "source" });
    }
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
    throw new SmmfError("invalid_argument", `'source' must be a file path, a file:// URI or an http(s) URL; ${source.split(":")[0]}: sources are not supported`, { param: "source" });
  } else {
    path = isAbsolute(source) ? source : resolve(modelDir, source);
  }
  const notAllowed = new SmmfError("failed_precondition", `'source' is not an allowed model source on worker ${workerId}`, { param: "source" });
  const real = realPath(path);
  if (!real) throw notAllowed;
  const roots = [modelDir, ...allowedDirs].map((dir) => realPath(resolve(dir))).filter((dir): dir is string => dir !== undefined);
  if (!roots.some((root) => within(real, root))) throw notAllowed;
  let isFile = false;
  try {
    isFile = statSync(real).isFile();
  } catch {
    // gone since: not allowed, as if it never was
  }
  if (!isFile) throw notAllowed;
  const gguf = startsWithGgufMagic(real);
  if (gguf === undefined) throw notAllowed;
  if (!gguf) throw new SmmfError("failed_precondition", `'source' is not a GGUF file on worker ${workerId}`, { param: "source" });
  return real;
}
