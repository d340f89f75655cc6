import { toJsonString } from "@bufbuild/protobuf";
import type { Etcd3 } from "etcd3";
import { ApiKeySchema, type ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { PrefixWatcher } from "../registry/PrefixWatcher.js";
import { etcdCall } from "../registry/etcdCall.js";
import type { Logger } from "../telemetry/createLogger.js";
import type { KeyStore } from "./KeyStore.js";

export const KEYS_PREFIX = "/smmf/v1/keys/";

/** API keys in etcd, one JSON ApiKey at /smmf/v1/keys/<id>, mirrored in memory by a watch. */
export class EtcdKeyStore implements KeyStore {
  private readonly watcher: PrefixWatcher<typeof ApiKeySchema>;
  private byId = new Map<string, ApiKey>();

  constructor(private readonly client: Etcd3, logger: Logger) {
    this.watcher = new PrefixWatcher({ client, prefix: KEYS_PREFIX, schema: ApiKeySchema, logger, what: "API key" });
    this.watcher.subscribe(() => {
      this.byId = new Map(this.watcher.snapshot().map((k) => [k.id, k]));
    });
  }

  keys(): ReadonlyMap<string, ApiKey> {
    this.watcher.snapshot();
    return this.byId;
  }

  ready(): Promise<void> {
    return this.watcher.ready();
  }

  subscribe(listener: () => void): () => void {
    return this.watcher.subscribe(listener);
  }

  async put(key: ApiKey): Promise<void> {
    await etcdCall(this.client.put(KEYS_PREFIX + key.id).value(toJsonString(ApiKeySchema, key)).exec());
  }

  async delete(id: string): Promise<boolean> {
    const res = await etcdCall(this.client.delete().key(KEYS_PREFIX + id).exec());
    return Number(res.deleted) > 0;
  }

  async close(): Promise<void> {
    await this.watcher.close();
  }
}
