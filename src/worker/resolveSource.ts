import { existsSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { SmmfError } from "../errors/SmmfError.js";

/**
 * The local file a model source names: an absolute path, a path relative to the worker's model directory,
 * or a file:// URI. Fails with failed_precondition, naming the path and the worker, when there is no such file.
 */
export function resolveSource(source: string, modelDir: string, workerId: string): string {
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
  if (!existsSync(path)) throw new SmmfError("failed_precondition", `model file ${path} does not exist on worker ${workerId}`, { param: "source" });
  return path;
}
