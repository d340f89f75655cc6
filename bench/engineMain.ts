// npm run bench:engine: see bench/engine.ts.
import { benchEngine } from "./engine.js";
import { finishTargets } from "./targets.js";

await benchEngine();
process.exit(finishTargets());
