// Entry of the telemetry thread (see TelemetryThread.ts): loads the TypeScript sources through tsx, as
// bin/smmf.js does, so that the thread starts the same way under `smmf`, tests and benchmarks.
import { register } from "tsx/esm/api";

register();
await import("./runTelemetryThread.ts");
