// npm run bench:engine: see bench/engine.ts.
import { benchEngine } from "./engine.js";

await benchEngine();
process.exit(0);
