import { parseCommandArgs } from "./parseCommandArgs.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { LoggedRequest } from "../telemetry/RequestLog.js";
import { authHeaders, EXIT, EXIT_CODES_HELP, reportError, serverUrl } from "./adminClient.js";
import { formatTable } from "./formatTable.js";

export const REQUESTS_USAGE = `Usage: smmf requests <list|show|tail|feedback> [ID] [flags]

  smmf requests list                  recent requests, newest first
  smmf requests show ID               one request: parameters, prompt, output, timings, feedback
  smmf requests tail                  requests as they finish, until interrupted; once the gateway has
                                      answered, it prints "following requests at URL" on stderr (stdout
                                      carries only rows): every request made from then on is shown
  smmf requests feedback ID --score N [--comment TEXT] [--label TEXT]

Flags:
  --url URL        a gateway (default http://127.0.0.1:8000; env SMMF_URL): each keeps its own log
  --model NAME     list, tail: only this model
  --status CODE    list, tail: only this HTTP status (e.g. 429)
  --key NAME       list, tail: only requests made with this API key (by its name)
  --since TIME     list: from this time (ISO 8601, or Unix seconds)
  --until TIME     list: before this time
  --limit N        list: at most N (default 20)
  --json           print JSON instead of text

${EXIT_CODES_HELP}
`;

async function call(url: string, path: string, init?: RequestInit): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${url}${path}`, { ...init, headers: { ...(init?.headers as Record<string, string> | undefined), ...authHeaders() } });
  } catch (err) {
    throw new SmmfError("unavailable", `cannot reach ${url}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`);
  }
  const body = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
  if (!res.ok) {
    const code = body.error?.code;
    throw new SmmfError(code === "not_found" || code === "invalid_argument" || code === "unavailable" ? code : "internal", body.error?.message ?? `HTTP ${res.status}`);
  }
  return body;
}

function row(r: LoggedRequest): string[] {
  const tokens = r.promptTokens === null ? "-" : `${r.promptTokens}/${r.completionTokens ?? 0}`;
  const feedback = r.feedback ? String(r.feedback.score) : "-";
  return [new Date(r.time).toISOString(), r.id, r.endpoint, r.model || "-", String(r.status), `${Math.round(r.latencyMs)}ms`, r.ttftMs === null ? "-" : `${Math.round(r.ttftMs)}ms`, tokens, r.instance ?? "-", feedback];
}

const HEADER = ["TIME", "ID", "ENDPOINT", "MODEL", "STATUS", "LATENCY", "TTFT", "TOKENS_IN/OUT", "INSTANCE", "FEEDBACK"];

function show(r: LoggedRequest): string {
  const lines = [
    `id:          ${r.id}`,
    `time:        ${new Date(r.time).toISOString()}`,
    `endpoint:    ${r.endpoint}${r.stream ? " (stream)" : ""}`,
    `model:       ${r.model}`,
    `instance:    ${r.instance ?? "-"} (${r.engine ?? "-"})`,
    `status:      ${r.status}${r.errorCode ? ` ${r.errorCode}: ${r.errorMessage}` : ""}`,
    `latency:     ${r.latencyMs.toFixed(1)} ms, first token ${r.ttftMs === null ? "-" : `${r.ttftMs.toFixed(1)} ms`}, retries ${r.retries}`,
    `tokens:      ${r.promptTokens ?? "-"} in, ${r.completionTokens ?? "-"} out`,
    `parameters:  ${JSON.stringify(r.params)}`,
    `api key:     ${r.keyName ?? "-"}`,
    `trace:       ${r.traceId ?? "-"}`,
    `feedback:    ${r.feedback ? `${r.feedback.score}${r.feedback.label ? ` [${r.feedback.label}]` : ""}${r.feedback.comment ? ` ${r.feedback.comment}` : ""}` : "-"}`,
    `prompt:      ${r.prompt ?? "(not captured)"}`,
    `output:      ${r.output ?? "(not captured)"}`,
  ];
  return `${lines.join("\n")}\n`;
}

/** `smmf requests ...`: a gateway's request log. */
export async function runRequestsCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("requests", REQUESTS_USAGE, args, {
    url: { type: "string" },
    model: { type: "string" },
    status: { type: "string" },
    key: { type: "string" },
    since: { type: "string" },
    until: { type: "string" },
    limit: { type: "string" },
    score: { type: "string" },
    comment: { type: "string" },
    label: { type: "string" },
    json: { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const [sub, id, extra] = positionals;
  const usage = (why: string) => {
    process.stderr.write(`smmf requests: ${why}\n\n${REQUESTS_USAGE}`);
    return EXIT.usage;
  };
  if (!sub) return usage("name a subcommand");
  if (extra !== undefined || ((sub === "list" || sub === "tail") && id !== undefined)) return usage(`unexpected argument '${extra ?? id}'`);
  const url = serverUrl(values.url);
  const filters = new URLSearchParams();
  if (values.model) filters.set("model", values.model);
  if (values.status) filters.set("status", values.status);
  if (values.key) filters.set("key", values.key);
  try {
    switch (sub) {
      case "list": {
        if (values.since) filters.set("since", values.since);
        if (values.until) filters.set("until", values.until);
        filters.set("limit", values.limit ?? "20");
        const page = (await call(url, `/api/v1/requests?${filters}`)) as { data: LoggedRequest[] };
        process.stdout.write(values.json ? `${JSON.stringify(page.data)}\n` : formatTable(HEADER, page.data.map(row)));
        return EXIT.ok;
      }
      case "show": {
        if (!id) return usage("'show' needs a request id");
        const entry = (await call(url, `/api/v1/requests/${encodeURIComponent(id)}`)) as LoggedRequest;
        process.stdout.write(values.json ? `${JSON.stringify(entry)}\n` : show(entry));
        return EXIT.ok;
      }
      case "feedback": {
        if (!id) return usage("'feedback' needs a request id");
        if (values.score === undefined || !Number.isFinite(Number(values.score))) return usage("'feedback' needs --score N (e.g. 1 or -1)");
        const body = { score: Number(values.score), ...(values.comment !== undefined ? { comment: values.comment } : {}), ...(values.label !== undefined ? { label: values.label } : {}) };
        const entry = (await call(url, `/api/v1/requests/${encodeURIComponent(id)}/feedback`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })) as LoggedRequest;
        process.stdout.write(values.json ? `${JSON.stringify(entry)}\n` : `feedback stored on ${entry.id}: ${entry.feedback?.score}\n`);
        return EXIT.ok;
      }
      case "tail": {
        let since = Date.now();
        const seen = new Set<string>();
        if (!values.json) process.stdout.write(formatTable(HEADER, []));
        for (let polls = 0; ; polls++) {
          const q = new URLSearchParams(filters);
          q.set("since", String(since));
          q.set("limit", "1000");
          const page = (await call(url, `/api/v1/requests?${q}`)) as { data: LoggedRequest[] };
          for (const entry of page.data.reverse()) {
            if (seen.has(entry.id)) continue;
            seen.add(entry.id);
            since = Math.max(since, entry.time);
            process.stdout.write(values.json ? `${JSON.stringify(entry)}\n` : `${row(entry).join("  ")}\n`);
          }
          // The gateway answered the first poll: every request made from here on is shown once it finishes. On
          // stderr, so that stdout stays rows (or JSON lines) only.
          if (polls === 0) process.stderr.write(`following requests at ${url}\n`);
          await new Promise((r) => setTimeout(r, 1_000));
        }
      }
      default:
        return usage(`unknown subcommand '${sub}'`);
    }
  } catch (err) {
    return reportError(`requests ${sub}`, err);
  }
}
