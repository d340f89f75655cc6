import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { SmmfError } from "../errors/SmmfError.js";

/** Throws method_not_allowed (405) unless the request uses one of `methods`. */
export function allowMethods(req: IncomingMessage | Http2ServerRequest, ...methods: string[]): void {
  if (!methods.includes(req.method ?? "")) throw new SmmfError("method_not_allowed", `Method ${req.method} is not allowed here; use ${methods.join(" or ")}.`);
}
