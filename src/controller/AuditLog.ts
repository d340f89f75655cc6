import type { AuditRecord } from "../gen/smmf/v1/audit_pb.js";
import type { ListAuditRequest } from "../gen/smmf/v1/controller_pb.js";
import { SmmfError } from "../errors/SmmfError.js";

/** Records kept: the newest 10,000 (in etcd and in memory alike). */
export const AUDIT_MAX_RECORDS = 10_000;
/** Schema version of AuditRecord. */
export const AUDIT_RECORD_VERSION = 1;
export const AUDIT_DEFAULT_LIMIT = 50;
export const AUDIT_MAX_LIMIT = 1000;
/** An audit id: the time in ms (15 digits), "-", 8 hex digits. */
export const AUDIT_ID_PATTERN = /^\d{15}-[0-9a-f]{8}$/;

/** Which records a list asks for: at most `limit`, older than `before` (an id; "" = from the newest), of `action` and `target` when given. */
export interface AuditQuery {
  limit: number;
  before: string;
  action: string;
  target: string;
}

/** A page of records, newest first; `next` is the `before` of the following page, "" when there is none. */
export interface AuditPage {
  records: AuditRecord[];
  next: string;
}

/** The audit record of changes made through the operating API: bounded, newest first. */
export interface AuditLog {
  /** Stores one record (its id says when: see newAuditId). */
  append(record: AuditRecord): Promise<void>;
  list(query: AuditQuery): Promise<AuditPage>;
  close(): Promise<void>;
}

/** A ListAuditRequest checked and with its defaults (invalid_argument when a field is out of range). */
export function auditQueryOf(req: Pick<ListAuditRequest, "limit" | "before" | "action" | "target">): AuditQuery {
  if (req.limit > AUDIT_MAX_LIMIT) throw new SmmfError("invalid_argument", `'limit' must be 1 to ${AUDIT_MAX_LIMIT}; got ${req.limit}`, { param: "limit" });
  if (req.before && !AUDIT_ID_PATTERN.test(req.before)) throw new SmmfError("invalid_argument", "'before' must be the 'next' of a previous answer (an audit record id)", { param: "before" });
  return { limit: req.limit || AUDIT_DEFAULT_LIMIT, before: req.before, action: req.action, target: req.target };
}

/** Whether a record passes the query's action and target filters (not its cursor). */
export function matchesAuditFilters(record: AuditRecord, query: AuditQuery): boolean {
  return (!query.action || record.action === query.action) && (!query.target || record.target === query.target);
}
