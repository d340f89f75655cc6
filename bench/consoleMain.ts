// `npm run bench:console`: only the web console's first load.
import { benchConsole } from "./console.js";

await benchConsole();
process.exit(0);
