import { fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { Range, type Etcd3 } from "etcd3";
import { AuditRecordSchema, type AuditRecord } from "../gen/smmf/v1/audit_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { ETCD_ROOT } from "../registry/instanceKey.js";
import { withTimeout } from "../registry/withTimeout.js";
import type { Logger } from "../telemetry/createLogger.js";
import { AUDIT_MAX_RECORDS, matchesAuditFilters, type AuditLog, type AuditPage, type AuditQuery } from "./AuditLog.js";

export const AUDIT_PREFIX = `${ETCD_ROOT}audit/`;
const TIMEOUT_MS = 5_000;
/** Keys read per etcd call while a filtered list looks for matches. */
const SCAN_PAGE = 500;

/**
 * The audit record in etcd: /smmf/v1/audit/<id> → AuditRecord as JSON, without a lease. Bounded by count:
 * after each write the oldest records beyond `maxRecords` are deleted in the background (one count, and
 * when over, one keys-only read and one range delete: ids sort by time). Every gateway and controller
 * writes and trims alike; a trim that fails is logged and done again after the next write.
 */
export class EtcdAuditLog implements AuditLog {
  private trimming: Promise<void> | undefined;
  private trimAgain = false;

  constructor(
    private readonly client: Etcd3,
    private readonly logger: Logger,
    private readonly maxRecords = AUDIT_MAX_RECORDS,
  ) {}

  async append(record: AuditRecord): Promise<void> {
    await withTimeout(this.client.put(AUDIT_PREFIX + record.id).value(toJsonString(AuditRecordSchema, record)).exec(), TIMEOUT_MS);
    this.scheduleTrim();
  }

  async list(query: AuditQuery): Promise<AuditPage> {
    try {
      return await this.read(query);
    } catch (err) {
      throw new SmmfError("unavailable", `the audit record could not be read from etcd: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  }

  private async read(query: AuditQuery): Promise<AuditPage> {
    const filtered = Boolean(query.action || query.target);
    const found: AuditRecord[] = [];
    let end = query.before ? AUDIT_PREFIX + query.before : Range.prefix(AUDIT_PREFIX).end;
    // One more than asked: whether there is a next page.
    while (found.length <= query.limit) {
      const page = filtered ? SCAN_PAGE : query.limit + 1 - found.length;
      const res = await withTimeout(this.client.getAll().inRange(new Range(Buffer.from(AUDIT_PREFIX), end)).sort("Key", "Descend").limit(page).exec(), TIMEOUT_MS);
      for (const kv of res.kvs) {
        const record = this.parse(kv.value.toString());
        if (record && matchesAuditFilters(record, query)) found.push(record);
      }
      if (res.kvs.length < page) break;
      end = res.kvs[res.kvs.length - 1].key;
    }
    const records = found.slice(0, query.limit);
    return { records, next: found.length > query.limit ? records[records.length - 1].id : "" };
  }

  async close(): Promise<void> {
    this.trimAgain = false;
    await this.trimming;
  }

  private parse(json: string): AuditRecord | undefined {
    try {
      return fromJsonString(AuditRecordSchema, json, { ignoreUnknownFields: true });
    } catch {
      return undefined; // not a record of ours: skipped
    }
  }

  private scheduleTrim(): void {
    if (this.trimming) {
      this.trimAgain = true;
      return;
    }
    this.trimming = this.trim()
      .catch((err: unknown) => this.logger.warn("could not trim the audit record in etcd", { error: String((err as Error)?.message ?? err) }))
      .finally(() => {
        this.trimming = undefined;
        if (this.trimAgain) {
          this.trimAgain = false;
          this.scheduleTrim();
        }
      });
  }

  private async trim(): Promise<void> {
    const count = await withTimeout(this.client.getAll().prefix(AUDIT_PREFIX).count(), TIMEOUT_MS);
    const excess = count - this.maxRecords;
    if (excess <= 0) return;
    const oldest = await withTimeout(this.client.getAll().prefix(AUDIT_PREFIX).sort("Key", "Ascend").limit(excess).keys(), TIMEOUT_MS);
    const last = oldest[oldest.length - 1];
    if (last === undefined) return;
    // [prefix, last] inclusive: the end of a range is exclusive, and last + "\0" is the next possible key.
    await withTimeout(this.client.delete().inRange(new Range(AUDIT_PREFIX, `${last}\0`)).exec(), TIMEOUT_MS);
  }
}
