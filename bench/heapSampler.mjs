// Loaded into an SMMF process by `npm run bench:heap` (node --import): V8's sampling heap profiler, counting
// objects that were collected too (so it measures allocation, not what stays). SIGUSR2 starts it; the next
// SIGUSR2 writes the profile to $SMMF_HEAP_PROFILE and stops it.
import { writeFileSync } from "node:fs";
import inspector from "node:inspector";

const session = new inspector.Session();
session.connect();
let sampling = false;
process.on("SIGUSR2", () => {
  if (!sampling) {
    sampling = true;
    session.post("HeapProfiler.startSampling", { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    return;
  }
  session.post("HeapProfiler.stopSampling", (err, result) => {
    sampling = false;
    writeFileSync(process.env.SMMF_HEAP_PROFILE, err ? JSON.stringify({ error: err.message }) : JSON.stringify(result.profile));
  });
});
