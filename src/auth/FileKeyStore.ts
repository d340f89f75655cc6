import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, watch, writeFileSync, type FSWatcher } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ApiKeySchema, type ApiKey } from "../gen/smmf/v1/auth_pb.js";
import type { Logger } from "../telemetry/createLogger.js";
import type { KeyStore } from "./KeyStore.js";

export const KEYS_FILE = "keys.json";

/**
 * API keys in a file of the data dir (`keys.json`, mode 0600), for the embedded mode: `{"keys": [ApiKey JSON,
 * ...]}`. Written whole to a temporary file and renamed into place; another process's writes (`smmf key create
 * --data-dir ...` while `smmf serve` runs) are picked up through a watch on the folder.
 */
export class FileKeyStore implements KeyStore {
  private byId = new Map<string, ApiKey>();
  private readonly listeners = new Set<() => void>();
  private watcher?: FSWatcher;
  readonly path: string;

  constructor(dataDir: string, private readonly logger: Logger, options: { watch?: boolean } = {}) {
    this.path = join(dataDir, KEYS_FILE);
    this.reload();
    if (options.watch ?? true) {
      try {
        mkdirSync(dataDir, { recursive: true });
        this.watcher = watch(dataDir, (_event, name) => {
          if (name === KEYS_FILE) this.reload();
        });
        this.watcher.on("error", () => undefined);
      } catch (err) {
        // No such folder can be made: no key can be written there either; keys made elsewhere are not seen.
        logger.warn("cannot watch the data dir for API keys", { dataDir, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message });
      }
    }
  }

  private reload(): void {
    if (!existsSync(this.path)) {
      this.replace(new Map());
      return;
    }
    try {
      const parsed = JSON.parse(readFileSync(this.path, "utf8")) as { keys?: JsonValue[] };
      this.replace(new Map((parsed.keys ?? []).map((k) => fromJson(ApiKeySchema, k, { ignoreUnknownFields: true })).map((k) => [k.id, k])));
    } catch (err) {
      // Half-written by another process (it writes by rename, so rarely): the next change event reads it again.
      this.logger.warn("cannot read the API keys file; keeping the keys read before", { path: this.path, error: (err as Error).message });
    }
  }

  private replace(next: Map<string, ApiKey>): void {
    this.byId = next;
    for (const listener of this.listeners) listener();
  }

  private write(next: Map<string, ApiKey>): void {
    mkdirSync(dirname(this.path), { recursive: true });
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`);
    writeFileSync(tmp, `${JSON.stringify({ keys: [...next.values()].map((k) => toJson(ApiKeySchema, k)) }, null, 2)}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.path);
    this.replace(next);
  }

  keys(): ReadonlyMap<string, ApiKey> {
    return this.byId;
  }

  async ready(): Promise<void> {}

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async put(key: ApiKey): Promise<void> {
    this.reload();
    const next = new Map(this.byId);
    next.set(key.id, key);
    this.write(next);
  }

  async delete(id: string): Promise<boolean> {
    this.reload();
    if (!this.byId.has(id)) return false;
    const next = new Map(this.byId);
    next.delete(id);
    this.write(next);
    return true;
  }

  async close(): Promise<void> {
    this.watcher?.close();
    this.listeners.clear();
  }
}
