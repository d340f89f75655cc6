import { readFileSync } from "node:fs";
import { SmmfError } from "../errors/SmmfError.js";

/**
 * The API key of an upstream, read on the worker: from `file` when given, else from the environment
 * variable `env`. Errors name where it was looked for, never what was found.
 */
export function readApiKey(file: string, env: string, required: boolean, workerId: string): string {
  if (file) {
    let key: string;
    try {
      key = readFileSync(file, "utf8").trim();
    } catch (err) {
      throw new SmmfError("failed_precondition", `cannot read the API key file ${file} on worker ${workerId}: ${(err as NodeJS.ErrnoException).code ?? "error"}`, { param: "api_key_file" });
    }
    if (!key) throw new SmmfError("failed_precondition", `the API key file ${file} on worker ${workerId} is empty`, { param: "api_key_file" });
    return key;
  }
  const key = env ? (process.env[env] ?? "").trim() : "";
  if (!key && required) {
    throw new SmmfError("failed_precondition", `this upstream needs an API key: set the environment variable ${env || "(none named)"} on worker ${workerId}, give api_key_file, or name one of the worker's upstream credentials in 'credential'`, { param: "api_key_env" });
  }
  return key;
}
