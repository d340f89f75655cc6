import { SmmfError } from "../errors/SmmfError.js";

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Model names become etcd key segments and URL path segments: letters, digits, '.', '_' and '-', at most 128. */
export function validateModelName(name: string): void {
  if (!name) throw new SmmfError("invalid_argument", "'model' is required", { param: "model" });
  if (!MODEL_NAME.test(name)) {
    throw new SmmfError("invalid_argument", `model name '${name.slice(0, 140)}' is invalid: use letters, digits, '.', '_' and '-' (at most 128, starting with a letter or digit)`, { param: "model" });
  }
}
