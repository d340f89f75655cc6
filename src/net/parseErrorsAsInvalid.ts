import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";

/**
 * Connect reports a request message that does not parse as protobuf ("parse binary: premature EOF") as
 * INTERNAL: HTTP 500 on the Connect protocol, as if the server had failed. It is the caller's bad input:
 * these wrappers make it INVALID_ARGUMENT (HTTP 400) on the Connect protocol's unary calls, in gRPC
 * trailers and in gRPC-Web's trailer frame. Nothing else is touched: a real internal error stays one.
 */
const PARSE_ERROR = /^parse binary: /;
const GRPC_INTERNAL = "13";
const GRPC_INVALID_ARGUMENT = "3";

/** Wraps every handler registered on `router` (call after the routes are registered). */
export function parseErrorsAsInvalid(router: ConnectRouter): void {
  const handlers = router.handlers as UniversalHandler[];
  for (let i = 0; i < handlers.length; i++) handlers[i] = wrap(handlers[i]);
}

function wrap(handler: UniversalHandler): UniversalHandler {
  // Bidirectional streams (Generate, the worker's Session) are the hot path and parse their messages as they
  // come: they are left as they are (the gateway's Generate makes a bad first message INVALID_ARGUMENT itself).
  if (handler.method.methodKind === "bidi_streaming") return handler;
  const wrapped = async (req: Parameters<UniversalHandler>[0]): Promise<UniversalServerResponse> => {
    const res = await handler(req);
    if (res.status === 500 && res.body !== undefined && !(res.body instanceof Uint8Array)) return fixConnectUnary(res);
    if (res.trailer !== undefined) fixGrpcTrailerWhenRead(res);
    else if (res.body !== undefined && !(res.body instanceof Uint8Array) && res.header?.get("content-type")?.startsWith("application/grpc-web")) {
      return { ...res, body: fixGrpcWebTrailer(res.body) };
    }
    return res;
  };
  return Object.assign(wrapped, handler);
}

/** A Connect unary error: `{"code":"internal","message":"parse binary: ..."}` with 500 becomes invalid_argument with 400. */
async function fixConnectUnary(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) chunks.push(chunk);
  let body = Buffer.concat(chunks);
  let status = res.status;
  try {
    const error = JSON.parse(body.toString("utf8")) as { code?: string; message?: string };
    if (error.code === "internal" && PARSE_ERROR.test(error.message ?? "")) {
      body = Buffer.from(JSON.stringify({ ...error, code: "invalid_argument", message: `the request message is not valid protobuf (${error.message})` }));
      status = 400;
      res.header?.set("content-length", String(body.byteLength));
    }
  } catch {
    // Not JSON: left as it is.
  }
  const once = body;
  return { ...res, status, body: (async function* () { yield once; })() };
}

/** gRPC: the status is in the trailers, set once the body is done; it is corrected when the adapter reads them. */
function fixGrpcTrailerWhenRead(res: UniversalServerResponse): void {
  const trailer = res.trailer!;
  Object.defineProperty(res, "trailer", {
    get() {
      if (trailer.get("grpc-status") === GRPC_INTERNAL && PARSE_ERROR.test(decodeURIComponentSafe(trailer.get("grpc-message") ?? ""))) {
        trailer.set("grpc-status", GRPC_INVALID_ARGUMENT);
      }
      return trailer;
    },
  });
}

/** gRPC-Web: the status is in the body's last frame (flag 0x80, HTTP/1-style header lines). */
async function* fixGrpcWebTrailer(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    if (chunk.length > 5 && (chunk[0] & 0x80) !== 0) {
      const text = Buffer.from(chunk.subarray(5)).toString("latin1");
      const message = /(?:^|\r\n)grpc-message:\s*([^\r]*)/i.exec(text)?.[1] ?? "";
      if (/(?:^|\r\n)grpc-status:\s*13\r\n/i.test(text) && PARSE_ERROR.test(decodeURIComponentSafe(message))) {
        const fixed = Buffer.from(text.replace(/grpc-status:\s*13/i, `grpc-status: ${GRPC_INVALID_ARGUMENT}`), "latin1");
        const frame = Buffer.alloc(5 + fixed.length);
        frame[0] = chunk[0];
        frame.writeUInt32BE(fixed.length, 1);
        fixed.copy(frame, 5);
        yield frame;
        continue;
      }
    }
    yield chunk;
  }
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
