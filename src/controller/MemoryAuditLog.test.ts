import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AuditRecordSchema, type AuditRecord } from "../gen/smmf/v1/audit_pb.js";
import { auditQueryOf, type AuditQuery } from "./AuditLog.js";
import { MemoryAuditLog } from "./MemoryAuditLog.js";
import { newAuditId } from "./newAuditId.js";

const T0 = Date.UTC(2026, 0, 1);

/** The i-th record: one second apart, alternating actions, targets m0..m2. */
const record = (i: number, fields: { id?: string } = {}): AuditRecord =>
  create(AuditRecordSchema, { id: newAuditId(T0 + i * 1000), actor: "ops", action: i % 2 ? "ScaleModel" : "StartModel", target: `m${i % 3}`, ok: true, ...fields });

const query = (q: Partial<AuditQuery> = {}): AuditQuery => ({ limit: 50, before: "", action: "", target: "", ...q });

async function logOf(n: number, capacity?: number): Promise<{ log: MemoryAuditLog; ids: string[] }> {
  const log = new MemoryAuditLog(capacity);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = record(i);
    ids.push(r.id);
    await log.append(r);
  }
  return { log, ids };
}

describe("MemoryAuditLog", () => {
  it("lists newest first, without a next page when all fit", async () => {
    const { log, ids } = await logOf(3);
    const page = await log.list(query());
    expect(page.records.map((r) => r.id)).toEqual([ids[2], ids[1], ids[0]]);
    expect(page.next).toBe("");
  });

  it("keeps only the newest `capacity` records", async () => {
    const { log, ids } = await logOf(12, 5);
    const page = await log.list(query());
    expect(page.records.map((r) => r.id)).toEqual(ids.slice(7).reverse());
  });

  it("pages by the cursor: each page older than the last, none twice, none left out", async () => {
    const { log, ids } = await logOf(7);
    const seen: string[] = [];
    let before = "";
    for (let pages = 0; pages < 10; pages++) {
      const page = await log.list(query({ limit: 3, before }));
      seen.push(...page.records.map((r) => r.id));
      if (!page.next) break;
      expect(page.records).toHaveLength(3);
      before = page.next;
    }
    expect(seen).toEqual([...ids].reverse());
  });

  it("filters by action and target, the cursor still applying", async () => {
    const { log, ids } = await logOf(12);
    const scales = await log.list(query({ action: "ScaleModel", limit: 2 }));
    expect(scales.records.map((r) => r.id)).toEqual([ids[11], ids[9]]);
    const rest = await log.list(query({ action: "ScaleModel", before: scales.next }));
    expect(rest.records.map((r) => r.id)).toEqual([ids[7], ids[5], ids[3], ids[1]]);
    const m0 = await log.list(query({ target: "m0", action: "StartModel" }));
    expect(m0.records.map((r) => r.id)).toEqual([ids[6], ids[0]]);
  });

  it("orders records of the same millisecond by id, so the cursor pages them consistently", async () => {
    const log = new MemoryAuditLog();
    const same = Array.from({ length: 6 }, () => record(0, { id: newAuditId(T0) }));
    for (const r of same) await log.append(r);
    const first = await log.list(query({ limit: 3 }));
    const second = await log.list(query({ limit: 3, before: first.next }));
    expect([...first.records, ...second.records].map((r) => r.id)).toEqual(same.map((r) => r.id).sort().reverse());
  });
});

describe("auditQueryOf", () => {
  it("defaults the limit to 50 and refuses out-of-range limits and malformed cursors", () => {
    expect(auditQueryOf({ limit: 0, before: "", action: "", target: "" }).limit).toBe(50);
    expect(() => auditQueryOf({ limit: 1001, before: "", action: "", target: "" })).toThrow(expect.objectContaining({ code: "invalid_argument", param: "limit" }));
    expect(() => auditQueryOf({ limit: 5, before: "../models/x", action: "", target: "" })).toThrow(expect.objectContaining({ code: "invalid_argument", param: "before" }));
    expect(auditQueryOf({ limit: 5, before: newAuditId(T0), action: "", target: "" }).before).toMatch(/^\d{15}-[0-9a-f]{8}$/);
  });
});
