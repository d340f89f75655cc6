// `npm run bench:gateway`: only the gateway capacity and overhead part of the benchmark.
import { benchGateway } from "./gateway.js";
import { finishTargets } from "./targets.js";

await benchGateway();
process.exit(finishTargets());
