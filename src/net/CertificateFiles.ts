import { readFileSync, unwatchFile, watchFile, type Stats } from "node:fs";
import tls from "node:tls";
import { SmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";

/** Paths of one TLS identity (PEM): a certificate chain and its key, and the CA bundle peers must chain to. */
export interface CertificatePaths {
  cert?: string;
  key?: string;
  ca?: string;
}

/** The PEM contents read from CertificatePaths. */
export interface CertificateMaterial {
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
}

/** How often the files are looked at (stat) for changes; tests may shorten it. */
export const CERTIFICATE_POLL_MS = Number(process.env.SMMF_CERT_POLL_MS) || 1_000;

function readAll(paths: CertificatePaths): CertificateMaterial {
  const read = (what: string, path?: string): Buffer | undefined => {
    if (!path) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new SmmfError("invalid_argument", `cannot read the TLS ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const material = { cert: read("certificate", paths.cert), key: read("key", paths.key), ca: read("CA bundle", paths.ca) };
  try {
    // Checks that the certificate and key parse and belong together, and that the CA bundle parses.
    tls.createSecureContext(material);
  } catch (err) {
    throw new SmmfError("invalid_argument", `the TLS files ${[paths.cert, paths.key, paths.ca].filter(Boolean).join(", ")} are not usable: ${(err as Error).message}`);
  }
  return material;
}

/**
 * A TLS identity kept up to date with its files: read (and checked) at start, then looked at every
 * CERTIFICATE_POLL_MS and read again when one changes (a rename onto the path included), so certificates
 * are rotated on disk without a restart. A half-written or mismatched set is not taken: the last good one
 * stays in use until the files are right again. Listeners are told of each new set.
 */
export class CertificateFiles {
  private material: CertificateMaterial;
  private readonly listeners = new Set<(material: CertificateMaterial) => void>();
  private readonly paths: string[];
  private readonly onStat = (curr: Stats, prev: Stats) => {
    if (curr.mtimeMs === prev.mtimeMs && curr.ino === prev.ino && curr.size === prev.size) return;
    this.reload();
  };
  /** How many times new files were taken. */
  reloads = 0;

  constructor(readonly files: CertificatePaths, private readonly logger?: Logger, private readonly what = "TLS certificate") {
    this.material = readAll(files);
    this.paths = [files.cert, files.key, files.ca].filter((p): p is string => Boolean(p));
    for (const path of this.paths) watchFile(path, { interval: CERTIFICATE_POLL_MS, persistent: false }, this.onStat);
  }

  /** The files' current contents. */
  get current(): CertificateMaterial {
    return this.material;
  }

  /** Calls `listener` with every new set of files; returns the function that stops it. */
  onChange(listener: (material: CertificateMaterial) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads the files again; keeps the current set when the new one is not usable (yet). */
  reload(): void {
    let next: CertificateMaterial;
    try {
      next = readAll(this.files);
    } catch (err) {
      this.logger?.warn(`${this.what} files changed but are not usable; keeping the ones in use`, { error: (err as Error).message });
      return;
    }
    const same = (a?: Buffer, b?: Buffer) => (a === undefined ? b === undefined : b !== undefined && a.equals(b));
    if (same(next.cert, this.material.cert) && same(next.key, this.material.key) && same(next.ca, this.material.ca)) return;
    this.material = next;
    this.reloads++;
    this.logger?.info(`${this.what} reloaded`, { files: this.paths });
    for (const listener of this.listeners) listener(next);
  }

  close(): void {
    for (const path of this.paths) unwatchFile(path, this.onStat);
    this.listeners.clear();
  }
}
