import { SmmfError } from "../errors/SmmfError.js";
import { isLoopbackHost } from "../net/loopbackHost.js";
import type { Logger } from "../telemetry/createLogger.js";
import { Authenticator, type AuthMode } from "./Authenticator.js";
import type { KeyStore } from "./KeyStore.js";

/**
 * The key checks of a gateway or controller that listens on `host`, after the safe defaults: with `auto`,
 * keys are checked once one exists, and always beyond loopback, where a server with no key at all refuses to
 * start (saying how to make the first one); `off` is an explicit opt-out, warned at every start.
 */
export async function startAuth(mode: AuthMode, host: string, store: KeyStore, logger: Logger, keyStoreFlag: string): Promise<Authenticator> {
  await store.ready();
  if (mode === "off") {
    logger.warn("API keys are off (--auth off): anyone who reaches this port can use every model and change everything", { host });
    return new Authenticator(store, "off");
  }
  const loopback = isLoopbackHost(host);
  if (!loopback && store.keys().size === 0) {
    throw new SmmfError(
      "failed_precondition",
      `refusing to listen on ${host} without an API key: anyone who reaches it could use and change everything. Create the first key with 'smmf key create admin --role admin --bootstrap ${keyStoreFlag}' (it prints the secret once), or listen on 127.0.0.1, or pass --auth off to run without keys.`,
    );
  }
  return new Authenticator(store, loopback ? mode : "on");
}
