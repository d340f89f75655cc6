import { SmmfError } from "../errors/SmmfError.js";

/**
 * The answer to a model the gateway does not serve — or that the caller's API key may not use, which must
 * read the same, so that a key cannot learn which other models exist.
 */
export function unknownModel(name: string): SmmfError {
  return new SmmfError("model_not_found", `The model '${name}' does not exist`, { param: "model" });
}
