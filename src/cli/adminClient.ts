import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ControllerService } from "../gen/smmf/v1/controller_pb.js";
import { toSmmfError } from "../errors/SmmfError.js";
import type { ErrorCode } from "../errors/errorTable.js";

export type ControllerClient = Client<typeof ControllerService>;

/** Exit codes of the admin commands. */
export const EXIT = { ok: 0, failed: 1, usage: 2, notFound: 3, refused: 4 } as const;

export const EXIT_CODES_HELP = "Exit codes: 0 done, 1 the server failed or could not be reached, 2 bad usage or invalid arguments, 3 unknown model, instance or worker, 4 refused (already exists, no room, not allowed now).";

/** The SMMF server a command talks to: --url, else SMMF_URL, else the local default; without a trailing slash. */
export function serverUrl(flag: string | undefined): string {
  return (flag ?? process.env.SMMF_URL ?? "http://127.0.0.1:8000").replace(/\/+$/, "");
}

let apiKeyFlag: string | undefined;

/** The API key the commands send: --api-key (set here by the argument parser), else SMMF_API_KEY. */
export function setApiKey(key: string | undefined): void {
  apiKeyFlag = key;
}

/** Headers carrying the API key, when there is one. */
export function authHeaders(): Record<string, string> {
  const key = apiKeyFlag ?? process.env.SMMF_API_KEY;
  return key ? { authorization: `Bearer ${key}` } : {};
}

/** A Connect transport to a gateway or controller (HTTP/1.1, so any SMMF port will do) that sends the API key. */
export function adminTransport(url: string | undefined): Transport {
  const withKey: Interceptor = (next) => (req) => {
    for (const [name, value] of Object.entries(authHeaders())) req.header.set(name, value);
    return next(req);
  };
  return createConnectTransport({ baseUrl: serverUrl(url), httpVersion: "1.1", interceptors: [withKey] });
}

/** The ControllerService of a gateway or controller. */
export function adminClient(url: string | undefined): ControllerClient {
  return createClient(ControllerService, adminTransport(url));
}

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  invalid_argument: EXIT.usage,
  model_not_found: EXIT.notFound,
  not_found: EXIT.notFound,
  already_exists: EXIT.refused,
  failed_precondition: EXIT.refused,
  resource_exhausted: EXIT.refused,
  rate_limit_exceeded: EXIT.refused,
  invalid_api_key: EXIT.refused,
  permission_denied: EXIT.refused,
};

/** Prints the error (one line, `smmf <command>: message`) and returns its exit code. */
export function reportError(command: string, err: unknown): number {
  const error = toSmmfError(err);
  const message = error.code === "internal" ? `internal error (${(err as Error)?.message ?? String(err)})` : error.message;
  process.stderr.write(`smmf ${command}: ${message}\n`);
  return BY_CODE[error.code] ?? EXIT.failed;
}
