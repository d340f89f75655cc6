// `npm run bench:observability`: only the observability on/off part of the benchmark.
import { benchModelPath } from "./benchModel.js";
import { benchObservability } from "./observability.js";
import { finishTargets } from "./targets.js";

await benchObservability(benchModelPath());
process.exit(finishTargets());
