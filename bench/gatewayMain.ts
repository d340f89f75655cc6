// `npm run bench:gateway`: only the gateway capacity and overhead part of the benchmark.
import { benchGateway } from "./gateway.js";

await benchGateway();
process.exit(0);
