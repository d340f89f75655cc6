import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** The project's root folder. */
export const projectRoot = root;

/**
 * The test model: stories260K.gguf in SMMF_MODEL_DIR, or else in ../shared/models beside the project.
 * A missing file fails the test with a message that says how to get it.
 */
export function testModelPath(): string {
  const dir = process.env.SMMF_MODEL_DIR ? resolve(process.env.SMMF_MODEL_DIR) : resolve(root, "../shared/models");
  const path = resolve(dir, "stories260K.gguf");
  if (!existsSync(path)) {
    throw new Error(
      `The test model is missing: ${path}\n` +
        "Download stories260K.gguf (1.1 MB TinyStories model, e.g. from the Hugging Face repository ggml-org/models, file tinyllamas/stories260K.gguf) " +
        "into ../shared/models beside the project, or set SMMF_MODEL_DIR to the folder that holds it.",
    );
  }
  return path;
}
