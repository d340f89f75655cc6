import { benchFootprint } from "./footprint.js";

await benchFootprint();
