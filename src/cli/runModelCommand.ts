import { parseCommandArgs } from "./parseCommandArgs.js";
import { create, toJson } from "@bufbuild/protobuf";
import { ModelSchema, type Model } from "../gen/smmf/v1/controller_pb.js";
import { InstanceState } from "../gen/smmf/v1/instance_pb.js";
import { ModelRecordSchema, ModelSpecSchema, type ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { adminClient, EXIT, EXIT_CODES_HELP, reportError, type ControllerClient } from "./adminClient.js";
import { formatTable } from "./formatTable.js";
import { applySpecFlags, SPEC_FLAG_OPTIONS, SPEC_FLAGS_HELP } from "./modelSpecFlags.js";
import { isFileEngine } from "../engines/proxyPresets.js";

export const MODEL_USAGE = `Usage: smmf model <list|start|stop|restart|scale|update> [args] [flags]

  smmf model list                       models: desired and ready replicas, engine, source, state
  smmf model start NAME --source PATH   add a model to the desired state (placed on workers with room)
  smmf model start NAME --engine vllm --base-url http://gpu1:8000/v1   the same, served by an upstream
  smmf model stop NAME                  remove it; its instances drain and unload
  smmf model restart NAME               replace its instances one at a time
  smmf model scale NAME REPLICAS        change its replica count
  smmf model update NAME [flags]        change its parameters; instances are replaced one at a time

Flags of start and update:
${SPEC_FLAGS_HELP}

Common flags:
  --url URL              a gateway or controller (default http://127.0.0.1:8000; env SMMF_URL)
  --json                 print JSON (protobuf JSON of the records) instead of text
  --wait                 start, restart, scale, update: wait until the model is as desired
  --timeout SECONDS      how long --wait waits (default 120)

${EXIT_CODES_HELP}
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether every wanted instance is online and of the current generation, and nothing else is left. */
export function isSettled(model: Model): boolean {
  const managed = model.instances.filter((i) => i.managed);
  return managed.length === model.desiredReplicas && managed.every((i) => i.state === InstanceState.ONLINE && i.generation >= model.generation);
}

async function waitSettled(client: ControllerClient, name: string, timeoutSeconds: number): Promise<Model> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    const { model } = await client.getModel({ name });
    if (model && isSettled(model)) return model;
    if (Date.now() > deadline) {
      throw new SmmfError("deadline_exceeded", `'${name}' is not as desired after ${timeoutSeconds} s${model?.message ? `: ${model.message}` : ""} (it may still get there)`);
    }
    await sleep(250);
  }
}

function sourceOf(model: Model): string {
  return model.spec?.source ?? "";
}

function modelRows(models: Model[]): string[][] {
  return models.map((m) => [
    m.name,
    m.managed ? String(m.desiredReplicas) : "-",
    String(m.readyReplicas),
    m.engines.join(",") || "-",
    m.managed ? sourceOf(m) || m.spec?.proxy?.baseUrl || "(preset default)" : "(static)",
    String(m.inFlight),
    m.message || (m.managed ? (isSettled(m) ? "ready" : "converging") : "ready"),
  ]);
}

function printRecord(record: ModelRecord, json: boolean, what: string): void {
  if (json) process.stdout.write(`${JSON.stringify(toJson(ModelRecordSchema, record))}\n`);
  else process.stdout.write(`${what} ${record.spec!.name}: ${record.spec!.replicas} replica(s) wanted, generation ${record.generation}\n`);
}

/** `smmf model ...`: the desired state of models, through a gateway or controller. */
export async function runModelCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("model", MODEL_USAGE, args, { ...SPEC_FLAG_OPTIONS, url: { type: "string" }, json: { type: "boolean" }, wait: { type: "boolean" }, timeout: { type: "string" } });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const [sub, name] = positionals;
  const usage = (why: string) => {
    process.stderr.write(`smmf model: ${why}\n\n${MODEL_USAGE}`);
    return EXIT.usage;
  };
  if (!sub) return usage("name a subcommand");
  const needsName = sub !== "list";
  if (needsName && !name) return usage(`'${sub}' needs a model name`);
  const allowed = sub === "list" ? 1 : sub === "scale" ? 3 : 2;
  if (positionals.length > allowed) return usage(`unexpected argument '${positionals[allowed]}'`);
  const timeout = Number(values.timeout ?? 120);
  if (!(timeout > 0)) return usage("--timeout must be a positive number of seconds");
  const client = adminClient(values.url);
  const json = values.json ?? false;
  const specFlags = { ...values } as Parameters<typeof applySpecFlags>[1];
  try {
    switch (sub) {
      case "list": {
        const { models } = await client.listModels({});
        if (json) process.stdout.write(`${JSON.stringify(models.map((m) => toJson(ModelSchema, m)))}\n`);
        else process.stdout.write(formatTable(["NAME", "DESIRED", "READY", "ENGINE", "SOURCE", "IN_FLIGHT", "STATUS"], modelRows(models)));
        return EXIT.ok;
      }
      case "start": {
        if (!values.source && isFileEngine(values.engine ?? "")) return usage("'start' needs --source PATH (or --engine for an upstream)");
        const spec = applySpecFlags(create(ModelSpecSchema, { name, replicas: 1 }), specFlags);
        const { model } = await client.startModel({ spec });
        if (values.wait) await waitSettled(client, name, timeout);
        printRecord(model!, json, "started");
        return EXIT.ok;
      }
      case "stop":
        await client.stopModel({ name });
        if (json) process.stdout.write(`${JSON.stringify({ name, stopped: true })}\n`);
        else process.stdout.write(`stopped ${name}: its instances drain and unload\n`);
        return EXIT.ok;
      case "restart": {
        const { model } = await client.restartModel({ name });
        if (values.wait) await waitSettled(client, name, timeout);
        printRecord(model!, json, "restarting");
        return EXIT.ok;
      }
      case "scale": {
        const replicas = positionals[2] ?? values.replicas;
        if (replicas === undefined || !/^\d+$/.test(replicas)) return usage("'scale' needs NAME REPLICAS (a whole number)");
        const { model } = await client.scaleModel({ name, replicas: Number(replicas) });
        if (values.wait) await waitSettled(client, name, timeout);
        printRecord(model!, json, "scaled");
        return EXIT.ok;
      }
      case "update": {
        const { model: current } = await client.getModel({ name });
        if (!current?.managed || !current.spec) throw new SmmfError("model_not_found", `The model '${name}' is not in the desired state (start it with 'smmf model start')`);
        const { model } = await client.updateModel({ spec: applySpecFlags(current.spec, specFlags) });
        if (values.wait) await waitSettled(client, name, timeout);
        printRecord(model!, json, "updated");
        return EXIT.ok;
      }
      default:
        return usage(`unknown subcommand '${sub}'`);
    }
  } catch (err) {
    return reportError(`model ${sub}`, err);
  }
}
