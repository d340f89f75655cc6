import net from "node:net";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { InferenceService } from "../gen/smmf/v1/inference_pb.js";
import { WorkerService } from "../gen/smmf/v1/worker_pb.js";

export interface WorkerClient {
  inference: Client<typeof InferenceService>;
  worker: Client<typeof WorkerService>;
}

/**
 * One HTTP/2 connection (gRPC) per worker address, reused by every request, kept alive with PINGs.
 * `onConnectionLost` hears of a connection that closed without being asked to (the worker died or hung).
 */
export class WorkerClients {
  private readonly clients = new Map<string, WorkerClient & { session: Http2SessionManager; closing: boolean }>();

  constructor(private readonly onConnectionLost: (address: string) => void = () => undefined) {}

  get(address: string): WorkerClient {
    let entry = this.clients.get(address);
    if (!entry) {
      const url = new URL(address);
      const created = { closing: false } as WorkerClient & { session: Http2SessionManager; closing: boolean };
      const session = new Http2SessionManager(
        address,
        { pingIntervalMs: 5_000, pingTimeoutMs: 2_000, pingIdleConnection: true, idleConnectionTimeoutMs: 24 * 3600_000 },
        {
          createConnection: () => {
            const socket = net.connect({ host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port), noDelay: true });
            socket.once("close", () => {
              if (!created.closing) this.onConnectionLost(address);
            });
            return socket;
          },
        },
      );
      const transport = createGrpcTransport({ baseUrl: address, sessionManager: session });
      entry = Object.assign(created, { session, inference: createClient(InferenceService, transport), worker: createClient(WorkerService, transport) });
      this.clients.set(address, entry);
    }
    return entry;
  }

  /** Drops connections to addresses no longer in use. */
  retain(addresses: Set<string>): void {
    for (const [address, entry] of this.clients) {
      if (!addresses.has(address)) {
        entry.closing = true;
        entry.session.abort();
        this.clients.delete(address);
      }
    }
  }

  close(): void {
    this.retain(new Set());
  }
}
