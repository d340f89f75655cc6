import { ConnectError, Code, type ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";

/** How often a Watch looks at the status again (a change reaches watchers within this). */
export const HEALTH_WATCH_MS = 250;

/**
 * grpc.health.v1.Health for one gRPC port: the server as a whole ("") and each service it serves are SERVING
 * while `serving()` says so (what the port's /readyz says: a gateway with an online instance, a worker not
 * draining, a controller taking part in the election) and NOT_SERVING otherwise. An unknown service is
 * NOT_FOUND in Check and SERVICE_UNKNOWN in Watch, as the protocol asks. Watch sends the status at once and
 * again each time it changes, until the call ends.
 */
export function createHealthService(serving: () => boolean, services: () => readonly string[]): ServiceImpl<typeof Health> {
  const known = (service: string) => service === "" || services().includes(service);
  const status = () => (serving() ? Status.SERVING : Status.NOT_SERVING);
  return {
    check(req) {
      if (!known(req.service)) throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      return { status: status() };
    },
    async *watch(req, ctx) {
      if (!known(req.service)) {
        yield { status: Status.SERVICE_UNKNOWN };
        return;
      }
      let last: Status | undefined;
      while (!ctx.signal.aborted) {
        const now = status();
        if (now !== last) {
          last = now;
          yield { status: now };
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, HEALTH_WATCH_MS);
          function done() {
            clearTimeout(timer);
            ctx.signal.removeEventListener("abort", done);
            resolve();
          }
          ctx.signal.addEventListener("abort", done, { once: true });
        });
      }
    },
  };
}
