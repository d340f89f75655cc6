import { readFileSync } from "node:fs";
import type { IOptions } from "etcd3";
import type { SmmfConfig } from "../config/SmmfConfig.js";
import { SmmfError } from "../errors/SmmfError.js";

/** How to reach etcd besides its endpoints: TLS (its CA, a client certificate) and a user. */
export type EtcdSecurity = Pick<IOptions, "credentials" | "auth">;

type EtcdConfig = Pick<SmmfConfig, "etcdCa" | "etcdCert" | "etcdKey" | "etcdUser" | "etcdPasswordFile">;

function readPem(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new SmmfError("invalid_argument", `cannot read the etcd ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * etcd's TLS and authentication from the settings: --etcd-ca (the CA etcd's certificate chains to; https
 * endpoints), --etcd-cert/--etcd-key (a client certificate, for etcd's --client-cert-auth), --etcd-user with
 * the password in SMMF_ETCD_PASSWORD or --etcd-password-file. The password is never logged or stored.
 */
export function etcdSecurityOf(config: EtcdConfig, env: NodeJS.ProcessEnv = process.env): EtcdSecurity {
  const security: EtcdSecurity = {};
  if (Boolean(config.etcdCert) !== Boolean(config.etcdKey)) throw new SmmfError("invalid_argument", "an etcd client certificate needs both --etcd-cert and --etcd-key");
  if (config.etcdCa || config.etcdCert) {
    if (!config.etcdCa) throw new SmmfError("invalid_argument", "--etcd-cert needs --etcd-ca (the CA that etcd's server certificate chains to)");
    security.credentials = {
      rootCertificate: readPem("CA", config.etcdCa),
      ...(config.etcdCert ? { certChain: readPem("certificate", config.etcdCert), privateKey: readPem("key", config.etcdKey) } : {}),
    };
  }
  if (config.etcdUser) {
    let password = env.SMMF_ETCD_PASSWORD;
    if (!password && config.etcdPasswordFile) {
      try {
        password = readFileSync(config.etcdPasswordFile, "utf8").replace(/\r?\n$/, "");
      } catch (err) {
        throw new SmmfError("invalid_argument", `cannot read the etcd password file ${config.etcdPasswordFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    if (!password) throw new SmmfError("invalid_argument", `--etcd-user ${config.etcdUser} needs a password: SMMF_ETCD_PASSWORD or --etcd-password-file`);
    security.auth = { username: config.etcdUser, password };
  } else if (config.etcdPasswordFile) throw new SmmfError("invalid_argument", "--etcd-password-file needs --etcd-user");
  return security;
}
