import { existsSync } from "node:fs";
import { SmmfError } from "../errors/SmmfError.js";
import { modelPath } from "./loadConfig.js";
import type { SmmfConfig } from "./SmmfConfig.js";
import { isFileEngine } from "../engines/proxyPresets.js";

/** What to say of a missing model file: which, where to get it, how to point SMMF at it. */
export function missingModelMessage(name: string, path: string): string {
  return [
    `model file not found: ${path} (model '${name}')`,
    name === "stories260K"
      ? "Get it: stories260K.gguf is a 1.1 MB TinyStories model (llama architecture); download it, e.g. from the Hugging Face repository ggml-org/models (file tinyllamas/stories260K.gguf)."
      : "Get the GGUF file of this model, or point SMMF at where it is.",
    "Then either put it at the path above, set SMMF_MODEL_DIR to the folder that holds it,",
    `set "modelDir" in smmf.config.json, or pass --model ${name}=/path/to/${name}.gguf`,
  ].join("\n");
}

/** Fails with failed_precondition and that message when a configured model's file is missing. */
export function assertModelFiles(config: SmmfConfig): void {
  for (const model of config.models) {
    if (!isFileEngine(model.engine ?? "")) continue; // an upstream: no file here
    const path = modelPath(config, model);
    if (!existsSync(path)) throw new SmmfError("failed_precondition", missingModelMessage(model.name, path));
  }
}
