import { randomBytes } from "node:crypto";

/** An audit record id, `<time in ms, 15 digits>-<8 random hex digits>`: ids sort by time, as etcd keys too. */
export function newAuditId(timeMs = Date.now()): string {
  return `${String(Math.max(0, Math.floor(timeMs))).padStart(15, "0")}-${randomBytes(4).toString("hex")}`;
}
