import type { Logger } from "../telemetry/createLogger.js";
import type { Metrics } from "../telemetry/Metrics.js";
import type { ControlPlane } from "./createControlPlane.js";
import { Reconciler } from "./Reconciler.js";
import { WorkerSessions } from "./WorkerSessions.js";

/** Runs the control loop, with sessions to every worker under `term`, until `signal` aborts (leadership lost or shutdown). */
export function startReconciling(plane: ControlPlane, controllerId: string, term: bigint, signal: AbortSignal, logger: Logger, metrics?: Metrics): void {
  let reconciler: Reconciler | undefined;
  const sessions = new WorkerSessions({ controllerId, term, clients: plane.clients, logger, onChange: () => reconciler?.trigger() });
  reconciler = new Reconciler({ store: plane.store, statuses: plane.statuses, registry: plane.registry, sessions, clients: plane.clients, logger, metrics });
  metrics?.leader.set(1);
  reconciler.start();
  signal.addEventListener(
    "abort",
    () => {
      reconciler?.stop();
      sessions.close();
      metrics?.leader.set(0);
    },
    { once: true },
  );
}
