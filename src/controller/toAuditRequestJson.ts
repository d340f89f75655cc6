import { toJson, type DescMessage, type JsonValue, type MessageShape } from "@bufbuild/protobuf";

/** Longest request_json kept; a longer one is cut, and says so. */
export const AUDIT_REQUEST_MAX_CHARS = 8192;
const REDACTED = "[redacted]";

/** A URL without its user name and password; other strings as they are. */
function withoutUrlCredentials(value: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(value)) return value;
  try {
    const url = new URL(value);
    if (!url.username && !url.password) return value;
    url.username = "redacted";
    url.password = "";
    return url.toString();
  } catch {
    return REDACTED;
  }
}

function redact(value: JsonValue): JsonValue {
  if (typeof value === "string") return withoutUrlCredentials(value);
  if (Array.isArray(value)) return value.map(redact);
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(value)) {
    // Header maps (an upstream's extra headers) keep their names, never their values.
    out[k] = k === "headers" && v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.keys(v).map((name) => [name, REDACTED])) : redact(v);
  }
  return out;
}

/**
 * A request as the audit record keeps it: proto3 JSON with header values and URL credentials redacted, at most
 * AUDIT_REQUEST_MAX_CHARS. The names of an upstream's key variable or file (`apiKeyEnv`, `apiKeyFile`) and
 * credential stay: they name where a secret is, they are not one.
 */
export function toAuditRequestJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): string {
  const json = JSON.stringify(redact(toJson(schema, message, { alwaysEmitImplicit: false })));
  return json.length <= AUDIT_REQUEST_MAX_CHARS ? json : `${json.slice(0, AUDIT_REQUEST_MAX_CHARS)}…(cut)`;
}
