import type { AuditRecord } from "../gen/smmf/v1/audit_pb.js";
import { AUDIT_MAX_RECORDS, matchesAuditFilters, type AuditLog, type AuditPage, type AuditQuery } from "./AuditLog.js";

/** The audit record in memory (the embedded mode): a ring of the newest `capacity` records. */
export class MemoryAuditLog implements AuditLog {
  private readonly ring: AuditRecord[] = [];
  /** Where the next record goes once the ring is full (its oldest record). */
  private head = 0;

  constructor(private readonly capacity = AUDIT_MAX_RECORDS) {}

  async append(record: AuditRecord): Promise<void> {
    if (this.ring.length < this.capacity) {
      this.ring.push(record);
      return;
    }
    this.ring[this.head] = record;
    this.head = (this.head + 1) % this.capacity;
  }

  async list(query: AuditQuery): Promise<AuditPage> {
    // Sorted by id rather than taken in insertion order: records of the same millisecond, or written while
    // the clock stepped back, still page consistently by the cursor.
    const matching = this.ring.filter((r) => (!query.before || r.id < query.before) && matchesAuditFilters(r, query)).sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const records = matching.slice(0, query.limit);
    return { records, next: matching.length > query.limit ? records[records.length - 1].id : "" };
  }

  async close(): Promise<void> {}
}
