import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { InferenceService } from "../gen/smmf/v1/inference_pb.js";
import { WorkerService } from "../gen/smmf/v1/worker_pb.js";

export interface WorkerClient {
  inference: Client<typeof InferenceService>;
  worker: Client<typeof WorkerService>;
}

/** One HTTP/2 connection (gRPC) per worker address, reused by every request. */
export class WorkerClients {
  private readonly clients = new Map<string, WorkerClient & { session: Http2SessionManager }>();

  get(address: string): WorkerClient {
    let entry = this.clients.get(address);
    if (!entry) {
      const session = new Http2SessionManager(address, { pingIntervalMs: 10_000, idleConnectionTimeoutMs: 15 * 60_000 });
      const transport = createGrpcTransport({ baseUrl: address, sessionManager: session });
      entry = { session, inference: createClient(InferenceService, transport), worker: createClient(WorkerService, transport) };
      this.clients.set(address, entry);
    }
    return entry;
  }

  /** Drops connections to addresses no longer in use. */
  retain(addresses: Set<string>): void {
    for (const [address, entry] of this.clients) {
      if (!addresses.has(address)) {
        entry.session.abort();
        this.clients.delete(address);
      }
    }
  }

  close(): void {
    this.retain(new Set());
  }
}
