import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { API_KEY } from "../auth/authInterceptor.js";
import { AuditRecordSchema } from "../gen/smmf/v1/audit_pb.js";
import { toSmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";
import { AUDIT_ADDRESS } from "./AuditAddress.js";
import { AUDIT_RECORD_VERSION, type AuditLog } from "./AuditLog.js";
import { toAuditRequestJson } from "./toAuditRequestJson.js";
import { newAuditId } from "./newAuditId.js";

/** Longest error message kept in a record. */
const MAX_ERROR_CHARS = 2048;

/** What a change is: its RPC, its target, and the request (recorded without secrets). */
export interface AuditedChange<Desc extends DescMessage> {
  action: string;
  target: string;
  schema: Desc;
  request: MessageShape<Desc>;
}

/**
 * Runs a change and records it once it has completed or failed: who (the context's API key name, else
 * "anonymous"; the caller's address when known), what, when, and the result. A record that cannot be
 * written is logged; it never fails the change.
 */
export function createAuditRecorder(audit: AuditLog, logger: Logger) {
  return async function audited<Desc extends DescMessage, T>(ctx: HandlerContext | undefined, change: AuditedChange<Desc>, body: () => Promise<T>): Promise<T> {
    let failure: unknown;
    let failed = false;
    let result: T | undefined;
    try {
      result = await body();
    } catch (err) {
      failed = true;
      failure = err;
    }
    const error = failed ? toSmmfError(failure) : undefined;
    const now = Date.now();
    const record = create(AuditRecordSchema, {
      id: newAuditId(now),
      time: timestampFromMs(now),
      actor: ctx?.values.get(API_KEY)?.name || "anonymous",
      address: ctx?.values.get(AUDIT_ADDRESS) ?? "",
      action: change.action,
      target: change.target,
      requestJson: toAuditRequestJson(change.schema, change.request),
      ok: !failed,
      errorCode: error?.code ?? "",
      errorMessage: error?.message.slice(0, MAX_ERROR_CHARS) ?? "",
      version: AUDIT_RECORD_VERSION,
    });
    try {
      await audit.append(record);
    } catch (err) {
      logger.error("could not write an audit record", { action: record.action, target: record.target, actor: record.actor, ok: record.ok, error: String((err as Error)?.message ?? err) });
    }
    if (failed) throw failure;
    return result as T;
  };
}
