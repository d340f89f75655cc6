import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCertificates {
  /** Folder holding the files below (removed by `remove`). */
  dir: string;
  /** The CA's certificate (PEM) and its path, for NODE_EXTRA_CA_CERTS. */
  ca: string;
  caFile: string;
  /** A server certificate for 127.0.0.1 and localhost, signed by the CA, and its key (PEM). */
  cert: string;
  key: string;
  remove(): void;
}

/** Runs openssl in `dir`; fails saying how to get openssl when it is missing. */
function opensslIn(dir: string): (...args: string[]) => void {
  return (...args) => {
    try {
      execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new Error("openssl not found on PATH: the TLS tests make their certificates with it. Install it with `apt-get install -y openssl`, or run `npm test`, which provisions it (scripts/ensure-tools.sh).");
      throw err;
    }
  };
}

/**
 * A throw-away CA and a server certificate for loopback (IP 127.0.0.1, DNS localhost), made with openssl at
 * test time. Fails saying how to get openssl when it is missing.
 */
export function makeTestCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), "smmf-certs-"));
  const openssl = opensslIn(dir);
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=SMMF test CA");
  openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  writeFileSync(join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext");
  const read = (name: string) => readFileSync(join(dir, name), "utf8");
  return { dir, ca: read("ca.pem"), caFile: join(dir, "ca.pem"), cert: read("server.pem"), key: read("server.key"), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface IssueOptions {
  /** Subject Organization values (SMMF roles: smmf-gateway, smmf-controller). */
  organizations?: string[];
  /** subjectAltName; default IP:127.0.0.1,DNS:localhost. */
  san?: string;
  /** Default serverAuth,clientAuth. */
  extendedKeyUsage?: string;
}

export interface TestCa {
  dir: string;
  /** The CA certificate's path. */
  caFile: string;
  /** Issues a certificate signed by this CA as `<name>.pem` and `<name>.key` in `dir` (replacing them in place when they exist); returns the paths. */
  issue(name: string, options?: IssueOptions): { cert: string; key: string };
  remove(): void;
}

/** A throw-away CA (openssl) that issues server and client certificates for loopback, in a folder of its own. */
export function makeTestCa(label = "SMMF test CA"): TestCa {
  const dir = mkdtempSync(join(tmpdir(), "smmf-ca-"));
  const openssl = opensslIn(dir);
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", `/CN=${label}`);
  let serial = 0;
  return {
    dir,
    caFile: join(dir, "ca.pem"),
    issue(name, options = {}) {
      const n = ++serial;
      const subject = `${(options.organizations ?? []).map((o) => `/O=${o}`).join("")}/CN=${name}`;
      // Written beside, then renamed onto the final paths: a reader never sees half a file.
      openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.${n}.key`, "-out", `${name}.${n}.csr`, "-subj", subject);
      writeFileSync(join(dir, `${name}.${n}.ext`), `subjectAltName=${options.san ?? "IP:127.0.0.1,DNS:localhost"}\nextendedKeyUsage=${options.extendedKeyUsage ?? "serverAuth,clientAuth"}\n`);
      openssl("x509", "-req", "-in", `${name}.${n}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", String(Date.now() * 1000 + n), "-out", `${name}.${n}.pem`, "-days", "2", "-extfile", `${name}.${n}.ext`);
      const cert = join(dir, `${name}.pem`);
      const key = join(dir, `${name}.key`);
      renameSync(join(dir, `${name}.${n}.key`), key);
      renameSync(join(dir, `${name}.${n}.pem`), cert);
      return { cert, key };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
