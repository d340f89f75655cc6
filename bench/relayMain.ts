// `npm run bench:relay`: only the relay part of the benchmark (upstream connection reuse on vs off).
import { benchRelay } from "./relay.js";
import { finishTargets } from "./targets.js";

await benchRelay();
process.exit(finishTargets());
