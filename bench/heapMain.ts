// `npm run bench:heap`: only the heap allocation per request.
import { benchHeap } from "./heap.js";
import { finishTargets } from "./targets.js";

await benchHeap();
process.exit(finishTargets());
