import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WorkerService } from "../gen/smmf/v1/worker_pb.js";
import { presentClusterCredential } from "../auth/clusterCredential.js";
import type { CertificateFiles } from "../net/CertificateFiles.js";
import { SmmfError } from "../errors/SmmfError.js";

export type WorkerServiceClient = Client<typeof WorkerService>;

/** WorkerService clients (gRPC over HTTP/2, one connection per worker address), made on first use. */
export class WorkerServiceClients {
  private readonly clients = new Map<string, WorkerServiceClient>();

  /**
   * `clusterSecret`: presented on every call. `tls`: for https workers, their CA and this process's client
   * certificate (mTLS); when its files change, later calls go on new connections with the new ones.
   */
  constructor(
    private readonly clusterSecret?: string,
    private readonly tls?: CertificateFiles,
  ) {
    tls?.onChange(() => this.clients.clear());
  }

  get(address: string): WorkerServiceClient {
    let client = this.clients.get(address);
    if (!client) {
      // Under mTLS a cleartext address (one written into etcd by someone else) is never called.
      if (this.tls && !address.startsWith("https://")) throw new SmmfError("unavailable", `worker ${address} is not an https address, and this process requires TLS to workers (--tls-ca)`);
      client = createClient(WorkerService, createGrpcTransport({ baseUrl: address, idleConnectionTimeoutMs: 60_000, interceptors: [presentClusterCredential(this.clusterSecret)], nodeOptions: this.tls?.current }));
      this.clients.set(address, client);
    }
    return client;
  }
}
