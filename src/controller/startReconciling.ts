import type { Logger } from "../telemetry/createLogger.js";
import type { ControlPlane } from "./createControlPlane.js";
import { Reconciler } from "./Reconciler.js";
import { WorkerSessions } from "./WorkerSessions.js";

/** Runs the control loop, with sessions to every worker under `term`, until `signal` aborts (leadership lost or shutdown). */
export function startReconciling(plane: ControlPlane, controllerId: string, term: bigint, signal: AbortSignal, logger: Logger): void {
  let reconciler: Reconciler | undefined;
  const sessions = new WorkerSessions({ controllerId, term, clients: plane.clients, logger, onChange: () => reconciler?.trigger() });
  reconciler = new Reconciler({ store: plane.store, statuses: plane.statuses, registry: plane.registry, sessions, clients: plane.clients, logger });
  reconciler.start();
  signal.addEventListener(
    "abort",
    () => {
      reconciler?.stop();
      sessions.close();
    },
    { once: true },
  );
}
