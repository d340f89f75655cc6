import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { AuditRecordSchema, type AuditRecord } from "../gen/smmf/v1/audit_pb.js";
import { adminClient, EXIT, EXIT_CODES_HELP, reportError } from "./adminClient.js";
import { formatTable } from "./formatTable.js";
import { parseCommandArgs } from "./parseCommandArgs.js";

export const AUDIT_USAGE = `Usage: smmf audit [flags]

The audit record: every change made through the operating API (models, instances), newest first: when, who
(the API key's name, or "anonymous" when keys are not enforced), what, on what, and how it ended. Needs a
key of role reader or admin when keys are enforced.

Flags:
  --url URL        a gateway or controller (default http://127.0.0.1:8000; env SMMF_URL)
  --limit N        at most N records (1 to 1000; default 50)
  --action NAME    only this action (StartModel, StopModel, RestartModel, ScaleModel, UpdateModel,
                   SetModelInstanceState)
  --target NAME    only changes of this model or instance
  --before ID      only records older than this one (the cursor printed after a full page)
  --json           print JSON (protobuf JSON of the records, and the next cursor) instead of text
  --api-key KEY    the API key to send (else SMMF_API_KEY)

${EXIT_CODES_HELP}
`;

const TIMEOUT_MS = 30_000;

function result(r: AuditRecord): string {
  return r.ok ? "ok" : `${r.errorCode || "failed"}: ${r.errorMessage.length > 80 ? `${r.errorMessage.slice(0, 79)}…` : r.errorMessage}`;
}

function actor(r: AuditRecord): string {
  return r.address ? `${r.actor} (${r.address})` : r.actor;
}

/** `smmf audit`. */
export async function runAuditCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("audit", AUDIT_USAGE, args, {
    url: { type: "string" },
    json: { type: "boolean" },
    limit: { type: "string" },
    action: { type: "string" },
    target: { type: "string" },
    before: { type: "string" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length > 0) {
    process.stderr.write(`smmf audit: unexpected argument '${positionals[0]}'\n\n${AUDIT_USAGE}`);
    return EXIT.usage;
  }
  if (values.limit !== undefined && !/^\d{1,4}$/.test(values.limit)) {
    process.stderr.write(`smmf audit: --limit must be a whole number from 1 to 1000; got '${values.limit}'\n`);
    return EXIT.usage;
  }
  try {
    const request = { limit: Number(values.limit ?? 0), action: values.action ?? "", target: values.target ?? "", before: values.before ?? "" };
    const { records, next } = await adminClient(values.url).listAudit(request, { timeoutMs: TIMEOUT_MS });
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ records: records.map((r) => toJson(AuditRecordSchema, r, { alwaysEmitImplicit: true })), next: next || null })}\n`);
      return EXIT.ok;
    }
    const rows = records.map((r) => [r.time ? timestampDate(r.time).toISOString() : "-", actor(r), r.action, r.target || "-", result(r)]);
    process.stdout.write(formatTable(["TIME", "ACTOR", "ACTION", "TARGET", "RESULT"], rows));
    if (next) process.stderr.write(`(more: smmf audit --before ${next})\n`);
    return EXIT.ok;
  } catch (err) {
    return reportError("audit", err);
  }
}
