import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, runCli, startCliStream, startApiGateway, startBareWorker, startControllerProc, testSource, type BareWorker, type ControllerProc } from "../helpers/controlCluster.js";
import { freePort } from "../helpers/childProcess.js";
import { killAll, waitFor, type DistGateway } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";

// `smmf model|instance|worker|events` run as child processes against a gateway (and a controller).
let etcd: TestEtcd;
let worker: BareWorker;
let controller: ControllerProc;
let gateway: DistGateway & { root: string };
let url: string;

beforeAll(async () => {
  etcd = await startEtcd();
  [worker, controller, gateway] = await Promise.all([startBareWorker(etcd, "cli-w", { labels: ["zone=x"] }), startControllerProc(etcd, "cli-c"), startApiGateway(etcd)]);
  url = `--url=${gateway.root}`;
  await waitFor("the worker registered", async () => (await api(gateway.root, "GET", "/api/v1/workers")).body.data?.length === 1, 10_000);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, controller.proc, worker.proc);
  await etcd?.close();
});

async function json(args: string[]): Promise<unknown> {
  const r = await runCli([...args, url, "--json"]);
  expect(r.code, `smmf ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout);
}

describe("smmf model | instance | worker (CLI)", () => {
  it("starts a model and waits for it, then lists models, instances and workers as JSON and as tables", async () => {
    const started = (await json(["model", "start", "cli-model", "--source", testSource(), "--replicas", "2", "--sequences", "1", "--context-size", "128", "--label", "team=docs", "--wait"])) as {
      spec: { name: string; replicas: number; labels: Record<string, string>; llamaCpp: { contextSize: number } };
      generation: string;
    };
    expect(started.spec).toMatchObject({ name: "cli-model", replicas: 2, labels: { team: "docs" }, llamaCpp: { contextSize: 128 } });

    const models = (await json(["model", "list"])) as { name: string; desiredReplicas: number; readyReplicas: number; managed: boolean; instances: unknown[] }[];
    expect(models).toEqual([expect.objectContaining({ name: "cli-model", desiredReplicas: 2, readyReplicas: 2, managed: true })]);
    expect(models[0].instances).toHaveLength(2);

    const instances = (await json(["instance", "list", "--model", "cli-model"])) as { instanceId: string; workerId: string; state: string; labels: Record<string, string>; managed: boolean }[];
    expect(instances).toHaveLength(2);
    for (const i of instances) expect(i).toMatchObject({ workerId: "cli-w", state: "INSTANCE_STATE_ONLINE", managed: true, labels: { team: "docs" } });

    const workers = (await json(["worker", "list"])) as { worker: { workerId: string; labels: Record<string, string>; memoryFreeBytes: string; memoryTotalBytes: string }; instances: unknown[] }[];
    expect(workers).toHaveLength(1);
    expect(workers[0].worker).toMatchObject({ workerId: "cli-w", labels: { zone: "x" } });
    expect(BigInt(workers[0].worker.memoryFreeBytes)).toBeLessThan(BigInt(workers[0].worker.memoryTotalBytes));
    expect(workers[0].instances).toHaveLength(2);

    const table = await runCli(["model", "list", url]);
    expect(table.code).toBe(0);
    expect(table.stdout.split("\n")[0]).toMatch(/^NAME\s+DESIRED\s+READY\s+ENGINE\s+SOURCE/);
    expect(table.stdout).toMatch(/cli-model\s+2\s+2\s+llama\.cpp/);
    const workerTable = await runCli(["worker", "list", url]);
    expect(workerTable.stdout).toMatch(/cli-w\s+http:\/\/127\.0\.0\.1:\d+\s+\d+\/\d+ MiB/);
  });

  it("sets an instance offline and online again, and drains one (the controller replaces it)", async () => {
    const [first] = (await json(["instance", "list", "--model", "cli-model"])) as { instanceId: string }[];
    const offline = (await json(["instance", "offline", first.instanceId])) as { state: string };
    expect(offline.state).toBe("INSTANCE_STATE_OFFLINE");
    const model = (await json(["model", "list"])) as { readyReplicas?: number }[];
    expect(model[0].readyReplicas).toBe(1);
    expect((await json(["instance", "online", first.instanceId])) as { state: string }).toMatchObject({ state: "INSTANCE_STATE_ONLINE" });

    const drained = await runCli(["instance", "drain", first.instanceId, url]);
    expect(drained.code, drained.stderr).toBe(0);
    expect(drained.stdout).toContain(`${first.instanceId}: draining`);
    await waitFor("the drained instance to be replaced", async () => {
      const list = (await json(["instance", "list", "--model", "cli-model"])) as { instanceId: string; state: string }[];
      return list.length === 2 && list.every((i) => i.instanceId !== first.instanceId && i.state === "INSTANCE_STATE_ONLINE");
    }, 20_000, 200);
  });

  it("scales, restarts and updates with --wait, then stops", async () => {
    const before = (await json(["instance", "list", "--model", "cli-model"])) as { instanceId: string }[];
    expect(((await json(["model", "scale", "cli-model", "1", "--wait"])) as { spec: { replicas: number } }).spec.replicas).toBe(1);
    expect((await json(["instance", "list", "--model", "cli-model"])) as unknown[]).toHaveLength(1);

    const restarted = await runCli(["model", "restart", "cli-model", "--wait", url]);
    expect(restarted.code, restarted.stderr).toBe(0);
    expect(restarted.stdout).toMatch(/^restarting cli-model: 1 replica\(s\) wanted, generation \d+/);
    const afterRestart = (await json(["instance", "list", "--model", "cli-model"])) as { instanceId: string }[];
    expect(afterRestart).toHaveLength(1);
    expect(before.map((i) => i.instanceId)).not.toContain(afterRestart[0].instanceId);

    const updated = (await json(["model", "update", "cli-model", "--context-size", "64", "--wait"])) as { spec: { replicas: number; labels: Record<string, string>; llamaCpp: { contextSize: number; sequences: number } } };
    // Flags not given keep their values.
    expect(updated.spec).toMatchObject({ replicas: 1, labels: { team: "docs" }, llamaCpp: { contextSize: 64, sequences: 1 } });
    const [instance] = (await json(["instance", "list", "--model", "cli-model"])) as { contextSize: number }[];
    expect(instance.contextSize).toBe(64);

    const stopped = await runCli(["model", "stop", "cli-model", url]);
    expect(stopped.code).toBe(0);
    await waitFor("no instances left", async () => ((await json(["instance", "list"])) as unknown[]).length === 0, 15_000, 200);
  });

  it("exits with a meaningful code and a one-line message on each kind of failure", async () => {
    const cases: [string[], number, RegExp][] = [
      [["model", "scale", "nope", "2"], 3, /smmf model scale: The model 'nope' is not in the desired state/],
      [["model", "stop", "nope"], 3, /nope/],
      [["instance", "offline", "nope-1"], 3, /no instance 'nope-1'/],
      [["model", "start", "cli-two", "--source", testSource(), "--placement", "zone=y"], 4, /no worker has the labels zone=y/],
      [["model", "start", "cli-two", "--source", "absent.gguf"], 4, /'source' is not an allowed model source on worker cli-w/],
      [["model", "start", "cli-two", "--source", testSource(), "--replicas", "lots"], 2, /--replicas must be a whole number/],
      [["model", "start", "cli-two"], 2, /needs --source/],
      [["model", "frobnicate", "x"], 2, /unknown subcommand 'frobnicate'/],
      [["instance", "list", "extra"], 2, /unexpected argument 'extra'/],
    ];
    for (const [args, code, message] of cases) {
      const r = await runCli([...args, url]);
      expect(r.code, `smmf ${args.join(" ")}: ${r.stdout}${r.stderr}`).toBe(code);
      expect(r.stderr).toMatch(message);
    }
    const dup1 = await runCli(["model", "start", "cli-dup", "--source", testSource(), url]);
    expect(dup1.code, dup1.stderr).toBe(0);
    const dup2 = await runCli(["model", "start", "cli-dup", "--source", testSource(), url]);
    expect(dup2.code).toBe(4);
    expect(dup2.stderr).toMatch(/already started/);
    expect((await runCli(["model", "stop", "cli-dup", url])).code).toBe(0);

    const unreachable = await runCli(["model", "list", `--url=http://127.0.0.1:${await freePort()}`]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^smmf model list: /);
  });

  it("prints --help for every command, exit 0, and works against a controller's port too", async () => {
    for (const args of [["model", "--help"], ["instance", "--help"], ["worker", "list", "--help"], ["events", "--help"], ["--help"]]) {
      const r = await runCli(args);
      expect(r.code, args.join(" ")).toBe(0);
      expect(r.stdout).toMatch(/Usage: smmf/);
    }
    const viaController = await runCli(["worker", "list", `--url=${controller.url}`, "--json"]);
    expect(viaController.code, viaController.stderr).toBe(0);
    expect(JSON.parse(viaController.stdout)[0].worker.workerId).toBe("cli-w");
  });

  it("streams events: a start shows up as model started, instance added and state changes, as JSON lines", async () => {
    const events = startCliStream(["events", url, "--json", "--model", "cli-ev"]);
    try {
      // Its readiness line (stderr) says the watch is under way (the CLI may take seconds to start on a busy machine).
      await events.readyOn(/^following events at \S+$/m);
      expect(events.stderr()).toContain(`following events at ${gateway.root}\n`);
      // Another model first: its events reach the node's event stream before cli-ev's (one etcd watch, in
      // order), so by the time cli-ev's events are out, any of its events that --model let through would be too.
      const other = await api(gateway.root, "POST", "/api/v1/models", { name: "cli-ev-other", source: testSource(), replicas: 1 });
      expect(other.status, JSON.stringify(other.body)).toBe(201);
      const started = await runCli(["model", "start", "cli-ev", "--source", testSource(), "--wait", url]);
      expect(started.code, started.stderr).toBe(0);
      const lines = await waitFor("model started and instance online events", () => {
        const parsed = events.stdout().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { type: string; model: string; message?: string });
        const types = parsed.map((e) => e.type);
        return types.includes("EVENT_TYPE_MODEL_STARTED") && types.includes("EVENT_TYPE_INSTANCE_ADDED") && parsed.some((e) => e.message?.endsWith("→ online")) ? parsed : undefined;
      }, 10_000);
      expect(lines.filter((e) => e.model !== "cli-ev")).toEqual([]);
      expect((await runCli(["model", "stop", "cli-ev", url])).code).toBe(0);
      expect((await api(gateway.root, "DELETE", "/api/v1/models/cli-ev-other")).status).toBe(200);
      await waitFor("model stopped and instance removed events", () => {
        const out = events.stdout();
        return out.includes("EVENT_TYPE_MODEL_STOPPED") && out.includes("EVENT_TYPE_INSTANCE_REMOVED");
      }, 15_000);
    } finally {
      await events.stop();
    }
  });
});
