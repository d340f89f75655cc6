import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The benchmark's model: stories260K.gguf in SMMF_MODEL_DIR, else ../shared/models beside the project. */
export function benchModelPath(): string {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
  const dir = process.env.SMMF_MODEL_DIR ? resolve(process.env.SMMF_MODEL_DIR) : resolve(root, "../shared/models");
  const path = resolve(dir, "stories260K.gguf");
  if (!existsSync(path)) {
    throw new Error(`benchmark model missing: ${path}; put stories260K.gguf there or set SMMF_MODEL_DIR`);
  }
  return path;
}
