/** gRPC's percent-encoding of a grpc-message header: bytes outside printable ASCII, and %, as %XX. */
export function grpcMessage(message: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(message) ? message : encodeURIComponent(message);
}

/** One message as gRPC frames it on HTTP/2: a flag byte (0: not compressed), its length (4 bytes, big-endian), the message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

/** Why a GrpcFrameReader stopped: a compressed message, or one longer than its limit. */
export type FrameProblem = { kind: "compressed" } | { kind: "too_large"; length: number };

/** Reads gRPC's length-prefixed messages from a stream's chunks, for the gateway's client and the worker's server alike. */
export class GrpcFrameReader {
  private buffered: Buffer | undefined;

  constructor(
    private readonly onMessage: (message: Uint8Array) => void,
    private readonly maxBytes = Number.MAX_SAFE_INTEGER,
  ) {}

  /** Takes a chunk and hands on each whole message in it; returns the problem that stops reading, if one does. */
  add(chunk: Buffer): FrameProblem | undefined {
    let buffered = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
    try {
      while (buffered.length >= 5) {
        if (buffered[0] !== 0) return { kind: "compressed" };
        const length = buffered.readUInt32BE(1);
        if (length > this.maxBytes) return { kind: "too_large", length };
        if (buffered.length < 5 + length) break;
        const message = buffered.subarray(5, 5 + length);
        buffered = buffered.subarray(5 + length);
        this.onMessage(message);
      }
    } finally {
      this.buffered = buffered.length === 0 ? undefined : buffered;
    }
    return undefined;
  }

  /** Whether part of a message is left (the stream ended inside one). */
  get partial(): boolean {
    return this.buffered !== undefined;
  }
}
