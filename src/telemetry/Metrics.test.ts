import { describe, expect, it } from "vitest";
import { promSamples } from "../../test/helpers/promSamples.js";
import { LabelledCells } from "./LabelledCells.js";
import { Metrics } from "./Metrics.js";

describe("per-instance series", () => {
  it("LabelledCells.remove drops the cells picked and keeps the others' cells (and their counts)", () => {
    const cells = new LabelledCells(3, () => ({ n: 0 }));
    cells.get("m", "i-1", "x").n = 1;
    cells.get("m", "i-2", "x").n = 2;
    cells.get("m", "i-1", "y").n = 3;
    expect(cells.remove((v) => v[1] === "i-1")).toBe(2);
    expect(cells.entries.map((e) => e.values)).toEqual([["m", "i-2", "x"]]);
    expect(cells.get("m", "i-2", "x").n).toBe(2);
    expect(cells.get("m", "i-1", "x").n).toBe(0);
    expect(cells.remove(() => false)).toBe(0);
    const one = new LabelledCells(1, () => ({ n: 0 }));
    one.get("a").n = 5;
    one.get("b").n = 6;
    one.remove((v) => v[0] === "a");
    expect(one.get("b").n).toBe(6);
  });

  it("series of instances that no source lists are dropped at the scrape; without a source all are kept", async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.generations.inc(1, "m", "m-1", "llama.cpp", "stop");
    metrics.generations.inc(2, "m", "m-2", "llama.cpp", "length");
    metrics.ejections.inc({ model: "m", instance: "m-1" });
    metrics.ejections.inc({ model: "m", instance: "m-2" });
    metrics.workerInFlight.set({ model: "m", instance: "m-1", engine: "llama.cpp" }, 1);
    metrics.requests.inc(1, "chat_completions", "m", 200);
    const instancesIn = async () => new Set(promSamples(await metrics.render()).map((s) => s.labels.instance).filter((i) => i !== undefined));
    expect(await instancesIn()).toEqual(new Set(["m-1", "m-2"]));

    let live = ["m-2"];
    const stop = metrics.trackInstances(() => live);
    expect(await instancesIn()).toEqual(new Set(["m-2"]));
    const text = await metrics.render();
    expect(text).toContain('smmf_worker_generations_total{model="m",instance="m-2",engine="llama.cpp",finish_reason="length"} 2');
    expect(text).toContain('smmf_gateway_requests_total{endpoint="chat_completions",model="m",status="200"} 1');
    // A series that comes back (a late update) is dropped again at the next scrape.
    metrics.generations.inc(1, "m", "m-1", "llama.cpp", "stop");
    expect(await instancesIn()).toEqual(new Set(["m-2"]));
    live = [];
    expect(await instancesIn()).toEqual(new Set());
    stop();
    metrics.generations.inc(1, "m", "m-3", "llama.cpp", "stop");
    expect(await instancesIn()).toEqual(new Set(["m-3"]));
  });
});
