import { availableEngines } from "../engines/availableEngines.js";
import { LLAMA_SERVER_ENGINE } from "../engines/proxyPresets.js";
import { findLlamaServer } from "../engines/llamaServer/llamaServerBuild.js";
import { toSmmfError } from "../errors/SmmfError.js";
import { EXIT } from "./adminClient.js";
import { parseCommandArgs } from "./parseCommandArgs.js";

export const ENGINE_USAGE = `Usage: smmf engine list|build [flags]

The engines of this machine.

  list                    the engines a worker here can run (--json: as a JSON array)
  build ${LLAMA_SERVER_ENGINE}  build llama.cpp's own llama-server, which the ${LLAMA_SERVER_ENGINE} engine runs, from
                          the llama.cpp source node-llama-cpp ships; kept in ~/.cache/smmf/llama-server
                          (XDG_CACHE_HOME), once per machine. Needs git, cmake and g++; 15–25 minutes on
                          2 cores. Prints the binary's path. SMMF_LLAMA_SERVER=PATH uses another build instead.

Flags of build:
  --jobs N     parallel compile jobs (default: the machine's cores)
  --force      build again even when the cache has it
`;

/** `smmf engine`. */
export async function runEngineCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("engine", ENGINE_USAGE, args, { json: { type: "boolean" }, jobs: { type: "string" }, force: { type: "boolean" } });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const [action, ...rest] = positionals;
  if (action === "list" && rest.length === 0) {
    const engines = availableEngines();
    if (values.json) process.stdout.write(`${JSON.stringify(engines)}\n`);
    else {
      for (const e of engines) process.stdout.write(e === LLAMA_SERVER_ENGINE ? `${e}\t${findLlamaServer()}\n` : `${e}\n`);
      if (!engines.includes(LLAMA_SERVER_ENGINE)) process.stdout.write(`(${LLAMA_SERVER_ENGINE}: not built here; smmf engine build ${LLAMA_SERVER_ENGINE})\n`);
    }
    return EXIT.ok;
  }
  if (action === "build" && rest.length === 1 && rest[0] === LLAMA_SERVER_ENGINE) {
    if (values.jobs !== undefined && !/^[1-9]\d{0,2}$/.test(values.jobs)) {
      process.stderr.write(`smmf engine: --jobs must be a whole number from 1 to 999; got '${values.jobs}'\n`);
      return EXIT.usage;
    }
    const { buildLlamaServer } = await import("../engines/llamaServer/buildLlamaServer.js");
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once("SIGINT", stop).once("SIGTERM", stop);
    try {
      const path = await buildLlamaServer({
        jobs: values.jobs === undefined ? undefined : Number(values.jobs),
        force: values.force,
        signal: controller.signal,
        progress: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`${path}\n`);
      return EXIT.ok;
    } catch (err) {
      process.stderr.write(`smmf engine build: ${toSmmfError(err).message}\n`);
      return EXIT.failed;
    } finally {
      process.off("SIGINT", stop).off("SIGTERM", stop);
    }
  }
  if (action === "build") process.stderr.write(`smmf engine build: the engine to build is ${LLAMA_SERVER_ENGINE} (the only one built here)\n\n${ENGINE_USAGE}`);
  else process.stderr.write(`smmf engine: ${action ? `unknown action '${[action, ...rest].join(" ")}'` : "list or build?"}\n\n${ENGINE_USAGE}`);
  return EXIT.usage;
}
