const INITIAL_BYTES = 64 * 1024;

/**
 * Writes numbers and strings into an off-heap buffer (little-endian; strings as UTF-8 with a 32-bit length),
 * and gives the buffer away whole (to transfer it to another thread without a copy), starting a new one.
 * Writing allocates nothing on the JavaScript heap: what the serving thread hands over this way adds no work
 * for its garbage collector.
 */
export class ByteWriter {
  private buffer = Buffer.allocUnsafeSlow(INITIAL_BYTES);
  private offset = 0;

  get length(): number {
    return this.offset;
  }

  u8(value: number): void {
    this.ensure(1);
    this.buffer[this.offset++] = value;
  }

  u32(value: number): void {
    this.ensure(4);
    this.offset = this.buffer.writeUInt32LE(value, this.offset);
  }

  f64(value: number): void {
    this.ensure(8);
    this.offset = this.buffer.writeDoubleLE(value, this.offset);
  }

  string(value: string): void {
    this.ensure(4 + value.length * 3);
    const start = this.offset + 4;
    let written = 0;
    // Short ASCII strings (ids, names, attribute keys: most of what is written) byte by byte, which is
    // quicker than a call into Buffer's UTF-8 encoder; anything else through the encoder.
    if (value.length <= 64) {
      const buffer = this.buffer;
      for (; written < value.length; written++) {
        const code = value.charCodeAt(written);
        if (code > 0x7f) break;
        buffer[start + written] = code;
      }
    }
    if (written < value.length) written = this.buffer.write(value, start, "utf8");
    this.buffer.writeUInt32LE(written, this.offset);
    this.offset = start + written;
  }

  /** Writes `value` over the 4 bytes at `offset` (already written): a length known only after what follows it. */
  u32At(offset: number, value: number): void {
    if (offset < 0 || offset + 4 > this.offset) throw new RangeError(`no 4 written bytes at ${offset}`);
    this.buffer.writeUInt32LE(value, offset);
  }

  /** Forgets what was written after `offset` (an earlier `length`): an item that failed half-way leaves no trace. */
  rewind(offset: number): void {
    if (offset < 0 || offset > this.offset) throw new RangeError(`cannot rewind to ${offset} of ${this.offset}`);
    this.offset = offset;
  }

  /** What was written, as a buffer of its own (its ArrayBuffer holds nothing else); the writer starts afresh. */
  take(): { buffer: ArrayBuffer; length: number } {
    const taken = { buffer: this.buffer.buffer as ArrayBuffer, length: this.offset };
    this.buffer = Buffer.allocUnsafeSlow(INITIAL_BYTES);
    this.offset = 0;
    return taken;
  }

  private ensure(bytes: number): void {
    if (this.offset + bytes <= this.buffer.length) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(this.buffer.length * 2, this.offset + bytes));
    this.buffer.copy(bigger, 0, 0, this.offset);
    this.buffer = bigger;
  }
}
