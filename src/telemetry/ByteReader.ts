/**
 * Reads what a `ByteWriter` wrote, in the same order. Reading past the end throws a RangeError (it never
 * returns bytes of something else): a reader over one item (`item`) cannot run into the next one.
 */
export class ByteReader {
  private offset = 0;
  private readonly buffer: Buffer;

  /** Reads `length` bytes of `buffer` from `start`. */
  constructor(buffer: ArrayBuffer, length: number, start = 0) {
    this.buffer = Buffer.from(buffer, start, length);
  }

  get done(): boolean {
    return this.offset >= this.buffer.length;
  }

  /** Where the next read starts. */
  get position(): number {
    return this.offset;
  }

  /** Bytes there are to read in all. */
  get length(): number {
    return this.buffer.length;
  }

  /** A reader over the next `length` bytes alone; this one continues after them. */
  item(length: number): ByteReader {
    this.need(length);
    const r = new ByteReader(this.buffer.buffer as ArrayBuffer, length, this.buffer.byteOffset + this.offset);
    this.offset += length;
    return r;
  }

  u8(): number {
    this.need(1);
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
    this.need(length);
    const v = this.buffer.toString("utf8", this.offset, this.offset + length);
    this.offset += length;
    return v;
  }

  private need(bytes: number): void {
    if (this.offset + bytes > this.buffer.length) throw new RangeError(`${bytes} bytes asked at ${this.offset} of ${this.buffer.length}`);
  }
}
