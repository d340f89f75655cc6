import type { EventEmitter } from "node:events";

/** Resolves once a response (or stream) whose buffer was full has drained, or has closed (nothing more will drain). */
export function untilDrained(writable: Pick<EventEmitter, "on" | "off">): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      writable.off("drain", done);
      writable.off("close", done);
      resolve();
    };
    writable.on("drain", done);
    writable.on("close", done);
  });
}
