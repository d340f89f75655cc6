import { SmmfError } from "../errors/SmmfError.js";

export function modelNotFound(name: string): SmmfError {
  return new SmmfError("model_not_found", `The model '${name}' is not in the desired state (start it with 'smmf model start')`, { param: "name" });
}
