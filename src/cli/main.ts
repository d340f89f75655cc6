import { loadConfig } from "../config/loadConfig.js";
import { COMMANDS, type Command } from "../config/settings.js";
import { parseSettingsArgs, settingsHelp } from "../config/settingsCli.js";
import { SmmfError } from "../errors/SmmfError.js";
import { createLogger } from "../telemetry/createLogger.js";

// What each settings command does (its line in the command list, and the head of its --help).
const SETTINGS_COMMANDS: Record<Command, string> = {
  serve: "Gateway, in-memory registry and one worker in one process (the embedded mode)",
  worker: "A worker: hosts models and registers them in etcd (--etcd)",
  gateway: "A gateway: REST and gRPC, load-balancing over the instances in etcd (--etcd)",
  controller: "A controller: the desired state of models in etcd, kept by the leader among the controllers (--etcd)",
};

/** A command's line in the command list, wrapped at 100 columns. */
function commandLine(command: Command): string {
  const line = `  ${command.padEnd(11)}  ${SETTINGS_COMMANDS[command]}`;
  const cut = line.length > 100 ? line.lastIndexOf(" ", 100) : -1;
  return cut < 0 ? line : `${line.slice(0, cut)}\n${" ".repeat(15)}${line.slice(cut + 1)}`;
}

const USAGE_HEAD = `Usage: smmf <command> [flags]

Commands:
${COMMANDS.map(commandLine).join("\n")}
  chat MODEL   Chat with a model through a gateway, streaming (smmf chat --help)
  help         Show this help

Operating (through a gateway or controller, --url; each has --help and --json):
  model list|start|stop|restart|scale|update     the desired state of models
  instance list|online|offline|drain             model instances
  worker list                                    workers: memory, instances, labels
  events                                         what happens, as it happens
  requests list|show|tail|feedback               a gateway's request log
  audit                                          who changed what, when, and how it ended
  key create|list|revoke|rotate|usage            API keys (through a server; --bootstrap: the first key, in the store)

On this machine:
  engine list|build                              the engines a worker here runs; build llama.cpp's server

Commands that call a server send the API key of --api-key KEY, else of SMMF_API_KEY.

Flags of serve, worker, gateway and controller follow; smmf COMMAND --help shows one command's.

`;

// The settings part is made from the settings table (src/config/settings.ts).
const USAGE = `${USAGE_HEAD}${settingsHelp()}`;

function commandUsage(command: Command): string {
  return `Usage: smmf ${command} [flags]\n\n${SETTINGS_COMMANDS[command]}. All commands: smmf help\n\n${settingsHelp(command)}`;
}

// Each command's module is imported only when it runs: a short admin command starts fast.
const RUNNERS = {
  serve: async () => (await import("./runServe.js")).runServe,
  worker: async () => (await import("./runWorker.js")).runWorker,
  gateway: async () => (await import("./runGateway.js")).runGateway,
  controller: async () => (await import("./runController.js")).runController,
} satisfies Record<Command, unknown>;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  if (command === "chat") return (await import("./runChat.js")).runChat(rest);
  if (command === "model") return (await import("./runModelCommand.js")).runModelCommand(rest);
  if (command === "instance") return (await import("./runInstanceCommand.js")).runInstanceCommand(rest);
  if (command === "events") return (await import("./runEvents.js")).runEvents(rest);
  if (command === "key") return (await import("./runKeyCommand.js")).runKeyCommand(rest);
  if (command === "requests") return (await import("./runRequestsCommand.js")).runRequestsCommand(rest);
  if (command === "engine") return (await import("./runEngineCommand.js")).runEngineCommand(rest);
  if (command === "audit") return (await import("./runAuditCommand.js")).runAuditCommand(rest);
  if (command === "worker" && rest[0] === "list") return (await import("./runWorkerList.js")).runWorkerList(rest.slice(1));
  if (!Object.hasOwn(RUNNERS, command)) {
    process.stderr.write(`smmf: unknown command '${command}'\n\n${USAGE}`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseSettingsArgs(rest);
  } catch (err) {
    process.stderr.write(`smmf: ${(err as Error).message}\n`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(commandUsage(command as Command));
    return 0;
  }
  try {
    const config = loadConfig(parsed.flags);
    const logger = createLogger(config.logLevel, `smmf-${command}`);
    const run = await RUNNERS[command as Command]();
    return await run(config, logger);
  } catch (err) {
    if (err instanceof SmmfError && err.code !== "internal") {
      process.stderr.write(`smmf: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`smmf: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
