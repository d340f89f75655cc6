import type { SmmfConfig } from "../config/SmmfConfig.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";
import { CertificateFiles } from "./CertificateFiles.js";
import type { ListenTls } from "./listenHttp.js";
import type { ListenerLimits } from "./startServer.js";

/** How a role's listener is set up: its limits, and TLS when configured. */
export interface ListenerSettings {
  limits: ListenerLimits;
  tls?: ListenTls;
}

type ListenerConfig = Pick<SmmfConfig, "tlsCert" | "tlsKey" | "tlsCa" | "headersTimeoutMs" | "requestTimeoutMs" | "idleSocketTimeoutMs" | "maxConnections" | "maxStreams">;

/** The listener limits of a config. */
export function listenerLimitsOf(config: ListenerConfig): ListenerLimits {
  return {
    headersTimeoutMs: config.headersTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    idleSocketTimeoutMs: config.idleSocketTimeoutMs,
    maxConnections: config.maxConnections,
    maxConcurrentStreams: config.maxStreams,
  };
}

/**
 * A role's listener settings. Gateways and controllers serve HTTPS with --tls-cert/--tls-key (API keys
 * authenticate their callers). A worker with a certificate and --tls-ca requires mTLS: only SMMF components
 * with a client certificate of that CA get through, each to the RPCs of its role.
 */
export function listenerSettingsOf(config: ListenerConfig, role: "gateway" | "controller" | "worker", logger: Logger): ListenerSettings {
  const limits = listenerLimitsOf(config);
  if (!config.tlsCert && !config.tlsKey) {
    if (role === "worker" && config.tlsCa) throw new SmmfError("invalid_argument", "--tls-ca on a worker asks for mTLS, which needs the worker's own certificate: add --tls-cert and --tls-key");
    return { limits };
  }
  if (!config.tlsCert || !config.tlsKey) throw new SmmfError("invalid_argument", "TLS needs both --tls-cert and --tls-key");
  const mtls = role === "worker" && Boolean(config.tlsCa);
  const files = new CertificateFiles({ cert: config.tlsCert, key: config.tlsKey, ca: mtls ? config.tlsCa : undefined }, logger, `${role} TLS certificate`);
  return { limits, tls: { files, requireClientCertificate: mtls } };
}

/**
 * The identity gateways and controllers present to workers, and the CA they check workers against
 * (--tls-ca, with --tls-client-cert/--tls-client-key, else --tls-cert/--tls-key); none without --tls-ca.
 */
export function clientTlsOf(config: Pick<SmmfConfig, "tlsCa" | "tlsCert" | "tlsKey" | "tlsClientCert" | "tlsClientKey">, logger: Logger): CertificateFiles | undefined {
  if (!config.tlsCa) return undefined;
  const cert = config.tlsClientCert || config.tlsCert;
  const key = config.tlsClientKey || config.tlsKey;
  if (Boolean(cert) !== Boolean(key)) throw new SmmfError("invalid_argument", "a client certificate needs both --tls-client-cert and --tls-client-key");
  return new CertificateFiles({ cert: cert || undefined, key: key || undefined, ca: config.tlsCa }, logger, "client TLS certificate");
}
