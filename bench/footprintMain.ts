import { benchFootprint } from "./footprint.js";
import { finishTargets } from "./targets.js";

await benchFootprint();
process.exit(finishTargets());
