import type { ApiKey } from "../gen/smmf/v1/auth_pb.js";

/** Where API key records live: etcd (EtcdKeyStore) or a file in the data dir (FileKeyStore). Reads come from memory. */
export interface KeyStore {
  /** The records by id, as last seen (no round trip). */
  keys(): ReadonlyMap<string, ApiKey>;
  /** Resolves once the records have been read. */
  ready(): Promise<void>;
  /** Calls `listener` after every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  put(key: ApiKey): Promise<void>;
  /** Whether there was such a key. */
  delete(id: string): Promise<boolean>;
  close(): Promise<void>;
}

/** The current schema version of ApiKey records. */
export const API_KEY_VERSION = 1;
