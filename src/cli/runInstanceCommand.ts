import { parseCommandArgs } from "./parseCommandArgs.js";
import { toJson } from "@bufbuild/protobuf";
import { InstanceSchema, InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import { adminClient, EXIT, EXIT_CODES_HELP, reportError } from "./adminClient.js";
import { formatTable } from "./formatTable.js";

export const INSTANCE_USAGE = `Usage: smmf instance <list|online|offline|drain> [ID] [flags]

  smmf instance list [--model NAME]   every model instance: model, worker, state, load
  smmf instance online ID             route requests to it again
  smmf instance offline ID            keep it loaded, route no requests to it
  smmf instance drain ID              let its requests finish, then unload it (the controller re-places it)

Flags:
  --url URL       a gateway or controller (default http://127.0.0.1:8000; env SMMF_URL)
  --json          print JSON (protobuf JSON of the records) instead of text

${EXIT_CODES_HELP}
`;

const STATES = { online: InstanceState.ONLINE, offline: InstanceState.OFFLINE, drain: InstanceState.DRAINING } as const;

export function stateName(state: InstanceState): string {
  return (InstanceState[state] ?? String(state)).toLowerCase();
}

function rows(instances: Instance[]): string[][] {
  return [...instances]
    .sort((a, b) => a.model.localeCompare(b.model) || a.workerId.localeCompare(b.workerId) || a.instanceId.localeCompare(b.instanceId))
    .map((i) => [i.instanceId, i.model, i.workerId, stateName(i.state), `${i.inFlight}/${i.maxConcurrency}`, i.managed ? "controller" : "static", i.address]);
}

/** `smmf instance ...`: list model instances and set their state, through a gateway or controller. */
export async function runInstanceCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("instance", INSTANCE_USAGE, args, { url: { type: "string" }, json: { type: "boolean" }, model: { type: "string" } });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const [sub, id, ...extra] = positionals;
  const usage = (why: string) => {
    process.stderr.write(`smmf instance: ${why}\n\n${INSTANCE_USAGE}`);
    return EXIT.usage;
  };
  if (!sub) return usage("name a subcommand");
  if (extra.length > 0 || (sub === "list" && id)) return usage(`unexpected argument '${extra[0] ?? id}'`);
  const client = adminClient(values.url);
  try {
    if (sub === "list") {
      const { instances } = await client.listModelInstances({ model: values.model ?? "" });
      if (values.json) process.stdout.write(`${JSON.stringify(instances.map((i) => toJson(InstanceSchema, i)))}\n`);
      else process.stdout.write(formatTable(["INSTANCE", "MODEL", "WORKER", "STATE", "IN_FLIGHT", "MANAGED_BY", "ADDRESS"], rows(instances)));
      return EXIT.ok;
    }
    if (!Object.hasOwn(STATES, sub)) return usage(`unknown subcommand '${sub}'`);
    if (!id) return usage(`'${sub}' needs an instance id`);
    const { instance } = await client.setModelInstanceState({ instanceId: id, state: STATES[sub as keyof typeof STATES] });
    if (values.json) process.stdout.write(`${JSON.stringify(toJson(InstanceSchema, instance!))}\n`);
    else process.stdout.write(`${id}: ${stateName(instance!.state)}${sub === "drain" ? " (unloads once its requests finish)" : ""}\n`);
    return EXIT.ok;
  } catch (err) {
    return reportError(`instance ${sub}`, err);
  }
}
