import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ControllerService } from "../gen/smmf/v1/controller_pb.js";
import { listenHttp } from "../net/listenHttp.js";
import type { Registry } from "../registry/Registry.js";
import type { Logger } from "../telemetry/createLogger.js";
import { createControllerService } from "./createControllerService.js";

export interface ControllerOptions {
  registry: Registry;
  logger: Logger;
  host: string;
  port: number;
}

/** Serves ControllerService (gRPC, gRPC-Web, Connect) and /healthz on one port. */
export async function startController(options: ControllerOptions): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const handler = connectNodeAdapter({
    routes(r) {
      r.service(ControllerService, createControllerService(options.registry));
    },
    fallback(req, res) {
      const ok = req.url === "/healthz";
      res.writeHead(ok ? 200 : 404, { "content-type": "application/json" });
      res.end(JSON.stringify(ok ? { status: "ok" } : { error: { message: "not found", type: "not_found_error", param: null, code: "not_found" } }));
    },
  });
  const listener = await listenHttp(handler, options.host, options.port);
  const url = `http://${options.host}:${listener.port}`;
  options.logger.info("controller listening", { url });
  return { url, port: listener.port, close: () => listener.close() };
}
