import type { CertificateFiles } from "../net/CertificateFiles.js";
import type { WorkerInference } from "../worker/createWorkerInferenceService.js";
import { GrpcWorker } from "./GrpcWorker.js";
import { InProcessWorker } from "./InProcessWorker.js";
import type { WorkerConnection } from "./WorkerConnection.js";

/**
 * One connection per worker address, reused by every request: gRPC over one HTTP/2 connection kept alive
 * with PINGs, or, for a worker in this process (`local`), its service called in process.
 * `onConnectionLost` hears of a connection that closed without being asked to (the worker died, hung or was cut
 * off); until a reconnection answers, `isDown` says so.
 */
export class WorkerClients {
  private readonly connections = new Map<string, WorkerConnection>();

  constructor(
    private readonly onConnectionLost: (address: string) => void = () => undefined,
    /** Sent with every call: the cluster credential. */
    private readonly headers: Record<string, string> = {},
    /** mTLS to workers at https addresses (their CA, this gateway's client certificate). */
    private readonly tls?: CertificateFiles,
    /** Workers in this process, by the address they registered: called in process. */
    private readonly local?: ReadonlyMap<string, WorkerInference>,
    /** Hears of a lost connection that is back (a reconnection answered a PING). */
    private readonly onConnectionRestored: (address: string) => void = () => undefined,
  ) {}

  get(address: string): WorkerConnection {
    let connection = this.connections.get(address);
    if (!connection) {
      const inference = this.local?.get(address);
      connection = inference ? new InProcessWorker(address, inference) : new GrpcWorker(address, { onLost: () => this.onConnectionLost(address), onRestored: () => this.onConnectionRestored(address), headers: this.headers, tls: this.tls });
      this.connections.set(address, connection);
    }
    return connection;
  }

  /** Whether the connection to this address was lost and no reconnection has answered yet: its instances are not picked. */
  isDown(address: string): boolean {
    return this.connections.get(address)?.down ?? false;
  }

  /** Drops connections to addresses no longer in use. */
  retain(addresses: Set<string>): void {
    for (const [address, connection] of this.connections) {
      if (!addresses.has(address)) {
        connection.close();
        this.connections.delete(address);
      }
    }
  }

  close(): void {
    this.retain(new Set());
  }
}
