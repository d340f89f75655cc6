// `npm run bench:distributed`: only the distributed part of the benchmark.
import { benchModelPath } from "./benchModel.js";
import { benchDistributed } from "./distributed.js";
import { finishTargets } from "./targets.js";

await benchDistributed(benchModelPath());
process.exit(finishTargets());
