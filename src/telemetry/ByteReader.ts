/** Reads what a `ByteWriter` wrote, in the same order. */
export class ByteReader {
  private offset = 0;
  private readonly buffer: Buffer;

  constructor(buffer: ArrayBuffer, length: number) {
    this.buffer = Buffer.from(buffer, 0, length);
  }

  get done(): boolean {
    return this.offset >= this.buffer.length;
  }

  u8(): number {
    return this.buffer[this.offset++];
  }

  u32(): number {
    const v = this.buffer.readUInt32LE(this.offset);
    this.offset += 4;
    return v;
  }

  f64(): number {
    const v = this.buffer.readDoubleLE(this.offset);
    this.offset += 8;
    return v;
  }

  string(): string {
    const length = this.u32();
    const v = this.buffer.toString("utf8", this.offset, this.offset + length);
    this.offset += length;
    return v;
  }
}
