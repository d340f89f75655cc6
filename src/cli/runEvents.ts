import { parseCommandArgs } from "./parseCommandArgs.js";
import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { EventType, WatchEventsResponseSchema } from "../gen/smmf/v1/controller_pb.js";
import { adminClient, EXIT, EXIT_CODES_HELP, reportError, serverUrl } from "./adminClient.js";

export const EVENTS_USAGE = `Usage: smmf events [--model NAME] [flags]

Prints controller events as they happen (models started, updated, stopped; instances added, changing state,
removed; workers joining and leaving; warnings; leader elections) until interrupted. Once its watch request
is on its way it prints "following events at URL" on stderr (stdout carries only the events).

Flags:
  --url URL       a gateway or controller (default http://127.0.0.1:8000; env SMMF_URL)
  --model NAME    only this model's events
  --json          one JSON object per line

${EXIT_CODES_HELP}
`;

/** `smmf events`: the controller's event stream. */
export async function runEvents(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("events", EVENTS_USAGE, args, { url: { type: "string" }, model: { type: "string" }, json: { type: "boolean" } });
  if (typeof parsed === "number") return parsed;
  if (parsed.positionals.length > 0) {
    process.stderr.write(`smmf events: unexpected argument '${parsed.positionals[0]}'\n\n${EVENTS_USAGE}`);
    return EXIT.usage;
  }
  try {
    const events = adminClient(parsed.values.url).watchEvents({ model: parsed.values.model ?? "" }, { timeoutMs: 0 });
    // The watch request is on its way (the server sends nothing until the first event). On stderr, so that
    // stdout stays events only.
    process.stderr.write(`following events at ${serverUrl(parsed.values.url)}\n`);
    for await (const event of events) {
      if (parsed.values.json) {
        process.stdout.write(`${JSON.stringify(toJson(WatchEventsResponseSchema, event))}\n`);
        continue;
      }
      const when = event.time ? timestampDate(event.time).toISOString() : "";
      const type = (EventType[event.type] ?? String(event.type)).toLowerCase();
      const subject = [event.model, event.instanceId, event.workerId].filter(Boolean).join(" ");
      process.stdout.write(`${when}  ${type}  ${subject}${event.message ? `  ${event.message}` : ""}\n`);
    }
    return EXIT.ok;
  } catch (err) {
    return reportError("events", err);
  }
}
