import { fromJsonString, toJsonString } from "@bufbuild/protobuf";
import type { Etcd3 } from "etcd3";
import { ModelRecordSchema, type ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { MODELS_PREFIX, modelKey } from "../registry/instanceKey.js";
import { PrefixWatcher } from "../registry/PrefixWatcher.js";
import { etcdCall } from "../registry/etcdCall.js";
import type { Logger } from "../telemetry/createLogger.js";
import { modelNotFound } from "./modelNotFound.js";
import type { ModelStore } from "./ModelStore.js";

const UPDATE_TRIES = 10;

/** The desired state in etcd: /smmf/v1/models/<name> → ModelRecord as JSON, without a lease. */
export class EtcdModelStore implements ModelStore {
  private readonly client: Etcd3;
  private readonly watcher: PrefixWatcher<typeof ModelRecordSchema>;

  constructor(client: Etcd3, logger: Logger) {
    this.client = client;
    this.watcher = new PrefixWatcher({ client, prefix: MODELS_PREFIX, schema: ModelRecordSchema, logger, what: "model" });
  }

  list(): readonly ModelRecord[] {
    return this.watcher.snapshot();
  }

  get(name: string): ModelRecord | undefined {
    return this.watcher.entries().get(modelKey(name));
  }

  subscribe(listener: () => void): () => void {
    return this.watcher.subscribe(listener);
  }

  ready(timeoutMs = 10_000): Promise<void> {
    return this.watcher.ready(timeoutMs);
  }

  async create(record: ModelRecord): Promise<ModelRecord> {
    const name = record.spec!.name;
    const key = modelKey(name);
    const res = await etcdCall(this.client.if(key, "Create", "==", 0).then(this.client.put(key).value(toJsonString(ModelRecordSchema, record))).commit());
    if (!res.succeeded) throw new SmmfError("already_exists", `The model '${name}' is already started; use 'smmf model update', 'scale' or 'restart'`, { param: "name" });
    return record;
  }

  async update(name: string, change: (current: ModelRecord) => ModelRecord): Promise<ModelRecord> {
    const key = modelKey(name);
    for (let i = 0; i < UPDATE_TRIES; i++) {
      const got = await etcdCall(this.client.get(key).exec());
      const kv = got.kvs[0];
      if (!kv) throw modelNotFound(name);
      const next = change(fromJsonString(ModelRecordSchema, kv.value.toString(), { ignoreUnknownFields: true }));
      const res = await etcdCall(this.client.if(key, "Mod", "==", kv.mod_revision).then(this.client.put(key).value(toJsonString(ModelRecordSchema, next))).commit());
      if (res.succeeded) return next;
    }
    throw new SmmfError("unavailable", `The model '${name}' is changing too often to update it now; retry`);
  }

  async remove(name: string): Promise<void> {
    const res = await etcdCall(this.client.delete().key(modelKey(name)).exec());
    if (Number(res.deleted) === 0) throw modelNotFound(name);
  }

  async close(): Promise<void> {
    await this.watcher.close();
  }
}
