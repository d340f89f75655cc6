import { randomFillSync } from "node:crypto";

const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let used = POOL_BYTES;

/**
 * A random id of `bytes` bytes as lowercase hex (trace ids: 16, span ids: 8), never all zeros (an invalid id
 * in W3C trace context). Drawn from a pool of cryptographic randomness refilled 4 KiB at a time, so an id
 * costs a slice of a buffer, not a system call.
 */
export function randomHexId(bytes: number): string {
  for (;;) {
    if (used + bytes > POOL_BYTES) {
      randomFillSync(pool);
      used = 0;
    }
    const id = pool.toString("hex", used, used + bytes);
    used += bytes;
    if (!/^0+$/.test(id)) return id;
  }
}
