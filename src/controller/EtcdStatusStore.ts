import { toJsonString } from "@bufbuild/protobuf";
import type { Etcd3 } from "etcd3";
import { ModelStatusSchema, type ModelStatus } from "../gen/smmf/v1/model_pb.js";
import { PrefixWatcher } from "../registry/PrefixWatcher.js";
import type { Logger } from "../telemetry/createLogger.js";
import { STATUS_PREFIX, type StatusStore } from "./StatusStore.js";

/** ModelStatus records at /smmf/v1/status/<name>. */
export class EtcdStatusStore implements StatusStore {
  private readonly watcher: PrefixWatcher<typeof ModelStatusSchema>;

  constructor(private readonly client: Etcd3, logger: Logger) {
    this.watcher = new PrefixWatcher({ client, prefix: STATUS_PREFIX, schema: ModelStatusSchema, logger, what: "model status" });
  }

  list(): readonly ModelStatus[] {
    return this.watcher.snapshot();
  }

  get(name: string): ModelStatus | undefined {
    return this.watcher.entries().get(`${STATUS_PREFIX}${name}`);
  }

  subscribe(listener: () => void): () => void {
    return this.watcher.subscribe(listener);
  }

  async put(status: ModelStatus): Promise<void> {
    await this.client.put(`${STATUS_PREFIX}${status.name}`).value(toJsonString(ModelStatusSchema, status)).exec();
  }

  async remove(name: string): Promise<void> {
    await this.client.delete().key(`${STATUS_PREFIX}${name}`).exec();
  }

  async close(): Promise<void> {
    await this.watcher.close();
  }
}
