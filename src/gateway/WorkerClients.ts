import { GrpcChannel } from "./GrpcChannel.js";
import type { CertificateFiles } from "../net/CertificateFiles.js";

/**
 * One HTTP/2 connection (gRPC) per worker address, reused by every request, kept alive with PINGs.
 * `onConnectionLost` hears of a connection that closed without being asked to (the worker died, hung or was cut
 * off); until a reconnection answers, `isDown` says so.
 */
export class WorkerClients {
  private readonly channels = new Map<string, GrpcChannel>();

  constructor(
    private readonly onConnectionLost: (address: string) => void = () => undefined,
    /** Sent with every call: the cluster credential. */
    private readonly headers: Record<string, string> = {},
    /** mTLS to workers at https addresses (their CA, this gateway's client certificate). */
    private readonly tls?: CertificateFiles,
  ) {}

  get(address: string): GrpcChannel {
    let channel = this.channels.get(address);
    if (!channel) {
      channel = new GrpcChannel(address, { onLost: () => this.onConnectionLost(address), headers: this.headers, tls: this.tls });
      this.channels.set(address, channel);
    }
    return channel;
  }

  /** Whether the connection to this address was lost and no reconnection has answered yet: its instances are not picked. */
  isDown(address: string): boolean {
    return this.channels.get(address)?.down ?? false;
  }

  /** Drops connections to addresses no longer in use. */
  retain(addresses: Set<string>): void {
    for (const [address, channel] of this.channels) {
      if (!addresses.has(address)) {
        channel.close();
        this.channels.delete(address);
      }
    }
  }

  close(): void {
    this.retain(new Set());
  }
}
