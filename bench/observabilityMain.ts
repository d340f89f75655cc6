// `npm run bench:observability`: only the observability on/off part of the benchmark.
import { benchModelPath } from "./benchModel.js";
import { benchObservability } from "./observability.js";

await benchObservability(benchModelPath());
process.exit(0);
