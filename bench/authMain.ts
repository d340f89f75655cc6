// `npm run bench:auth`: only the access-control part of the benchmark (API keys on vs off).
import { benchAuth } from "./auth.js";
import { finishTargets } from "./targets.js";

await benchAuth();
process.exit(finishTargets());
