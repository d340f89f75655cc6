// `npm run bench:console`: only the web console's first load.
import { benchConsole } from "./console.js";
import { finishTargets } from "./targets.js";

await benchConsole();
process.exit(finishTargets());
