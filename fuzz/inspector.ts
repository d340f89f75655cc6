import { randomBytes } from "node:crypto";
import { connect } from "node:net";

/**
 * Asks a Node process started with `--inspect` for a full garbage collection (the DevTools protocol's
 * HeapProfiler.collectGarbage), over a minimal WebSocket client (Node 20 has none without a flag). The fuzzer
 * reads the server's RSS after one, before and after the run, so that it compares retained memory, not how
 * much garbage V8 had not collected yet.
 */
export async function collectGarbage(wsUrl: string, timeoutMs = 10_000): Promise<void> {
  const url = new URL(wsUrl);
  const socket = connect({ host: url.hostname, port: Number(url.port) });
  const timer = setTimeout(() => socket.destroy(new Error("the inspector did not answer in time")), timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    await new Promise<void>((resolve, reject) => {
      socket.on("error", reject);
      socket.on("close", () => reject(new Error("the inspector closed the connection")));
      socket.on("data", (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        if (!upgraded) {
          const end = buffer.indexOf("\r\n\r\n");
          if (end < 0) return;
          if (!/^HTTP\/1\.1 101/.test(buffer.subarray(0, end).toString("latin1"))) return reject(new Error(`no WebSocket upgrade: ${buffer.subarray(0, end).toString("latin1")}`));
          upgraded = true;
          buffer = buffer.subarray(end + 4);
          socket.write(maskedTextFrame(JSON.stringify({ id: 1, method: "HeapProfiler.collectGarbage" })));
        }
        for (;;) {
          const frame = readFrame(buffer);
          if (!frame) return;
          buffer = buffer.subarray(frame.size);
          if (frame.opcode === 1 && (JSON.parse(frame.payload.toString("utf8")) as { id?: number }).id === 1) return resolve();
        }
      });
    });
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const head = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const body = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) body[i] = payload[i] ^ mask[i % 4];
  return Buffer.concat([head, mask, body]);
}

/** One unmasked frame from the server, if `data` holds all of it. */
function readFrame(data: Buffer): { opcode: number; payload: Buffer; size: number } | undefined {
  if (data.length < 2) return undefined;
  let length = data[1] & 0x7f;
  let at = 2;
  if (length === 126) {
    if (data.length < 4) return undefined;
    length = data.readUInt16BE(2);
    at = 4;
  } else if (length === 127) {
    if (data.length < 10) return undefined;
    length = Number(data.readBigUInt64BE(2));
    at = 10;
  }
  if (data.length < at + length) return undefined;
  return { opcode: data[0] & 0x0f, payload: data.subarray(at, at + length), size: at + length };
}
