import { Ajv } from "ajv";
import { APIConnectionError, APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { killAll, MODEL, startDistGateway, startDistWorker, waitFor, waitUntilReady, type DistGateway, type DistWorker } from "../helpers/distCluster.js";

// Mid-stream failover with tool calls: two workers behind one gateway; one worker is SIGKILLed while streamed
// tool calls run on it. Documented behaviour: a stream that has already sent tool-call deltas ends with an error
// event (the SDK throws an APIError); a stream that has sent only content text continues on the other instance.
// Never a duplicated or corrupted call: every stream that finishes normally carries arguments that parse and
// match the declared schema.
const LEASE_TTL_S = 2;
// A tool call's prompt is long (the template's function documentation: hundreds of tokens) and prompt evaluation
// is the slow part on these machines, so few streams: 6 tool-call streams on 2 × 4 sequences, then 2 plain ones
// in the sequences left free.
const SEQUENCES = 4;
/** Tool-call streams started at once before the kill. */
const TOOL_STREAMS = 6;
/** Tool-call streams started once the gateway no longer picks the killed worker. */
const AFTER_KILL_STREAMS = 3;
/** Plain content streams (no tools), started when the first tool call has begun; long enough to run past the kill. */
const PLAIN_STREAMS = 2;
const PLAIN_MAX_TOKENS = 800;
const TOOL_MAX_TOKENS = 400;

const TOOL_NAME = "file_report";
const PARAMETERS = {
  type: "object",
  properties: {
    title: { type: "string", minLength: 16, maxLength: 48 },
    summary: { type: "string", minLength: 32, maxLength: 96 },
    priority: { type: "integer" },
    score: { type: "number" },
    mode: { type: "string", enum: ["fast", "careful", "auto"] },
  },
  required: ["title", "summary", "priority", "score", "mode"],
  additionalProperties: false,
} as const;
const TOOLS = [{ type: "function" as const, function: { name: TOOL_NAME, description: "Files a short report about the story.", parameters: PARAMETERS } }];

const ajv = new Ajv({ allErrors: true });
const validateArguments = ajv.compile(PARAMETERS);

let etcd: TestEtcd;
let workers: DistWorker[] = [];
let gateway: DistGateway;

beforeAll(async () => {
  etcd = await startEtcd();
  workers = await Promise.all(
    ["tcf-a", "tcf-b"].map((workerId) => startDistWorker(etcd, { workerId, sequences: SEQUENCES, leaseTtl: LEASE_TTL_S, contextSize: 2048 })),
  );
  gateway = await startDistGateway(etcd, ["--queue-timeout-ms", "60000", "--queue-size", "512"]);
  await waitUntilReady(gateway);
  // Both instances pickable, so that load spreads over the two from the first request on.
  await waitFor("both instances to be pickable in the gateway", async () => (await pickable()).size === 2, 10_000);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, ...workers);
  await etcd?.close();
});

/** Instance ids the gateway would pick now (GET /api/v1/instances). */
async function pickable(): Promise<Set<string>> {
  const res = await fetch(`${gateway.baseURL.replace(/\/v1$/, "")}/api/v1/instances`);
  const body = (await res.json()) as { data: { instanceId: string; pickable: boolean }[] };
  return new Set(body.data.filter((i) => i.pickable).map((i) => i.instanceId));
}

interface CallSeen {
  ids: string[];
  names: string[];
  types: string[];
  arguments: string;
}

interface StreamRun {
  i: number;
  tools: boolean;
  /** The instance the gateway first sent it to (x-smmf-instance). */
  instance?: string;
  content: string;
  /** Content chunks received. */
  chunks: number;
  calls: Map<number, CallSeen>;
  /** Chunks that carried tool-call arguments. */
  argumentDeltas: number;
  finishReason: string | null;
  completionTokens?: number;
  /** Protocol oddities seen while streaming (chunks after the finish, choices other than 0, …). */
  oddities: string[];
  done: boolean;
  error?: unknown;
}

function newRun(i: number, tools: boolean): StreamRun {
  return { i, tools, content: "", chunks: 0, calls: new Map(), argumentDeltas: 0, finishReason: null, oddities: [], done: false };
}

/** Streams one chat completion, recording every delta; `onChunk` runs after each chunk. Never rejects. */
async function runStream(run: StreamRun, onChunk: () => void): Promise<void> {
  try {
    const request = run.tools
      ? {
          model: MODEL,
          messages: [{ role: "user" as const, content: `File report number ${run.i} about the story of the little dog.` }],
          tools: TOOLS,
          tool_choice: "required" as const,
          max_tokens: TOOL_MAX_TOKENS,
          temperature: 1,
          seed: 1000 + run.i,
        }
      : {
          model: MODEL,
          messages: [{ role: "user" as const, content: `Tell me story number ${run.i}` }],
          max_tokens: PLAIN_MAX_TOKENS,
          temperature: 1,
          seed: 5000 + run.i,
        };
    const { data, response } = await gateway.openai.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } }).withResponse();
    run.instance = response.headers.get("x-smmf-instance") ?? "";
    for await (const chunk of data) {
      if (chunk.usage) run.completionTokens = chunk.usage.completion_tokens;
      for (const choice of chunk.choices) {
        if (choice.index !== 0) run.oddities.push(`a choice with index ${choice.index}`);
        if (run.finishReason !== null) run.oddities.push(`a chunk after finish_reason ${run.finishReason}: ${JSON.stringify(choice)}`);
        const delta = choice.delta;
        // A content chunk per token (as failover.test.ts counts them: the opening role chunk aside).
        if (typeof delta.content === "string" && !delta.role) {
          run.content += delta.content;
          run.chunks++;
        }
        for (const piece of delta.tool_calls ?? []) {
          let call = run.calls.get(piece.index);
          if (!call) run.calls.set(piece.index, (call = { ids: [], names: [], types: [], arguments: "" }));
          if (piece.id !== undefined && piece.id !== null) call.ids.push(piece.id);
          if (piece.type !== undefined && piece.type !== null) call.types.push(piece.type);
          if (piece.function?.name !== undefined && piece.function.name !== null) call.names.push(piece.function.name);
          if (piece.function?.arguments) {
            call.arguments += piece.function.arguments;
            run.argumentDeltas++;
          }
        }
        if (choice.finish_reason) run.finishReason = choice.finish_reason;
      }
      onChunk();
    }
  } catch (err) {
    run.error = err;
  } finally {
    run.done = true;
    onChunk();
  }
}

/** What is wrong with a finished tool-call stream; [] when it is a clean error or a valid, complete call. */
function toolRunProblems(run: StreamRun): string[] {
  const problems: string[] = [...run.oddities];
  if (!run.done) problems.push("never ended");
  const errored = run.error !== undefined;
  if (errored) {
    // A clean error event: the SDK throws an APIError from the stream, not a dropped connection.
    if (!(run.error instanceof APIError) || run.error instanceof APIConnectionError) {
      problems.push(`ended with something other than an error event: ${String(run.error)}`);
    }
  }
  // Whatever reached a finish_reason must be a whole, valid call (never broken JSON followed by a normal finish).
  if (!errored || run.finishReason !== null) {
    if (run.finishReason !== "tool_calls") problems.push(`finish_reason ${run.finishReason}, expected tool_calls`);
    if (run.calls.size === 0) problems.push("no tool call");
    const ids = new Set<string>();
    for (const [index, call] of run.calls) {
      if (index >= run.calls.size) problems.push(`tool call indexes not 0..${run.calls.size - 1}: ${[...run.calls.keys()]}`);
      if (call.ids.length !== 1 || !call.ids[0]) problems.push(`call ${index}: id sent ${call.ids.length} times (${JSON.stringify(call.ids)})`);
      else if (ids.has(call.ids[0])) problems.push(`call ${index}: id ${call.ids[0]} used twice`);
      else ids.add(call.ids[0]);
      if (call.names.length !== 1 || call.names[0] !== TOOL_NAME) problems.push(`call ${index}: name sent as ${JSON.stringify(call.names)}`);
      if (call.types.some((t) => t !== "function")) problems.push(`call ${index}: type ${JSON.stringify(call.types)}`);
      let args: unknown;
      try {
        args = JSON.parse(call.arguments);
      } catch (err) {
        problems.push(`call ${index}: arguments do not parse (${(err as Error).message}): ${call.arguments}`);
        continue;
      }
      if (!validateArguments(args)) problems.push(`call ${index}: arguments break the schema (${ajv.errorsText(validateArguments.errors)}): ${call.arguments}`);
    }
  }
  return problems;
}

interface Scenario {
  victim: DistWorker;
  survivor: DistWorker;
  toolRuns: StreamRun[];
  plainRuns: StreamRun[];
  afterKill: StreamRun[];
  /** Tool-call streams on the victim, with arguments received and not ended, at the kill. */
  cutTools: StreamRun[];
  /** Plain streams on the victim, with content received and not ended, at the kill; with their chunks then. */
  cutPlain: { run: StreamRun; chunksBeforeKill: number }[];
}
let scenario: Scenario | undefined;

function requireScenario(): Scenario {
  if (!scenario) throw new Error("the scenario (first test) did not run to the end");
  return scenario;
}

function describeRun(run: StreamRun, s: Scenario): string {
  const where = run.instance === s.victim.instanceId ? "victim" : run.instance === s.survivor.instanceId ? "survivor" : run.instance;
  const args = [...run.calls.values()].map((c) => c.arguments);
  return `#${run.i} ${run.tools ? "tools" : "plain"} (first on ${where}): finish ${run.finishReason}, chunks ${run.chunks}, argument deltas ${run.argumentDeltas}, error ${run.error === undefined ? "none" : String(run.error)}, arguments ${JSON.stringify(args)}`;
}

describe("distributed mode: failover of streamed tool calls", () => {
  it("ends tool-call streams cut by a SIGKILL with an error event and never hands out a broken call", async () => {
    const byInstance = new Map(workers.map((w) => [w.instanceId, w]));
    const plainRuns = Array.from({ length: PLAIN_STREAMS }, (_, i) => newRun(i, false));
    const toolRuns = Array.from({ length: TOOL_STREAMS }, (_, i) => newRun(100 + i, true));

    // Checked after every chunk: once a tool call has begun, the plain streams start (in the sequences the
    // tool-call streams left free); the kill trigger: a worker with a plain stream under way (10 chunks in) and at
    // least two tool-call streams in the middle of their arguments (4 argument pieces in, not ended).
    let fire!: (victim: DistWorker) => void;
    const chosen = new Promise<DistWorker>((resolve) => (fire = resolve));
    let fired = false;
    const plainDone: Promise<void>[] = [];
    const check = () => {
      if (plainDone.length === 0 && toolRuns.some((r) => r.calls.size > 0)) plainDone.push(...plainRuns.map((run) => runStream(run, check)));
      if (fired) return;
      for (const worker of workers) {
        const on = (r: StreamRun) => r.instance === worker.instanceId && !r.done;
        const plain = plainRuns.filter((r) => on(r) && r.chunks >= 10).length;
        const tools = toolRuns.filter((r) => on(r) && r.argumentDeltas >= 4).length;
        if (plain >= 1 && tools >= 2) {
          fired = true;
          return fire(worker);
        }
      }
    };
    const toolsDone = toolRuns.map((run) => runStream(run, check));
    let deadline: NodeJS.Timeout | undefined;
    const victim = await Promise.race([
      chosen,
      new Promise<never>((_, reject) => {
        deadline = setTimeout(() => {
          const state = [...plainRuns, ...toolRuns].map((r) => `#${r.i} on ${r.instance} chunks ${r.chunks} args ${r.argumentDeltas} done ${r.done}`);
          reject(new Error(`no worker had a plain stream and 2 tool-call streams under way within 45 s:\n${state.join("\n")}`));
        }, 45_000);
      }),
      // Everything ended before the trigger fired: the streams were too short to be caught mid-call.
      Promise.all(toolsDone).then(() => {
        throw new Error(`every stream ended before the kill trigger fired:\n${[...plainRuns, ...toolRuns].map((r) => `#${r.i} ${r.finishReason} chunks ${r.chunks} args ${r.argumentDeltas} ${String(r.error ?? "")}`).join("\n")}`);
      }),
    ]).finally(() => clearTimeout(deadline));
    const survivor = workers.find((w) => w !== victim)!;
    expect(byInstance.get(victim.instanceId)).toBe(victim);

    // Kill it, and note what was under way on it at that moment (no await in between).
    victim.proc.signal("SIGKILL");
    const cutTools = toolRuns.filter((r) => r.instance === victim.instanceId && !r.done && r.argumentDeltas > 0);
    const cutPlain = plainRuns.filter((r) => r.instance === victim.instanceId && !r.done && r.chunks > 0).map((run) => ({ run, chunksBeforeKill: run.chunks }));
    expect((await victim.proc.exited).signal).toBe("SIGKILL");

    // Once the gateway no longer picks the dead worker, new tool-call streams go to the survivor.
    await waitFor("the gateway to stop picking the killed worker", async () => !(await pickable()).has(victim.instanceId), (LEASE_TTL_S + 10) * 1_000);
    const afterKill = Array.from({ length: AFTER_KILL_STREAMS }, (_, i) => newRun(900 + i, true));
    await Promise.all([...plainDone, ...toolsDone, ...afterKill.map((run) => runStream(run, () => undefined))]);
    scenario = { victim, survivor, toolRuns, plainRuns, afterKill, cutTools, cutPlain };

    const problems = [...toolRuns, ...afterKill].flatMap((run) => toolRunProblems(run).map((p) => `#${run.i} (${describeRun(run, scenario!)}): ${p}`));
    expect(problems, `${problems.length} problems:\n${problems.slice(0, 20).join("\n")}`).toEqual([]);
    expect(cutTools.length).toBeGreaterThanOrEqual(2);
  }, 90_000);

  it("cuts at least one tool-call stream with an error, and only streams that were on the killed worker", () => {
    const s = requireScenario();
    const errored = [...s.toolRuns, ...s.afterKill].filter((r) => r.error !== undefined);
    expect(errored.length, "tool-call streams that ended with an error").toBeGreaterThan(0);
    expect(errored.filter((r) => r.instance !== s.victim.instanceId).map((r) => describeRun(r, s))).toEqual([]);
    // Each stream cut mid-call either got its whole call before the kill or ended with the error event.
    const cutErrored = s.cutTools.filter((r) => r.error !== undefined);
    expect(cutErrored.length).toBeGreaterThan(0);
    for (const run of s.cutTools) expect(run.error !== undefined || run.finishReason === "tool_calls", describeRun(run, s)).toBe(true);
    // Streams on the survivor all completed with a valid call.
    const onSurvivor = s.toolRuns.filter((r) => r.instance === s.survivor.instanceId);
    expect(onSurvivor.length).toBeGreaterThan(0);
    expect(onSurvivor.filter((r) => r.finishReason !== "tool_calls" || r.error !== undefined).map((r) => describeRun(r, s))).toEqual([]);
  });

  it("continues a plain content stream cut by the kill on the surviving worker", () => {
    const s = requireScenario();
    expect(s.cutPlain.length, "plain streams under way on the victim at the kill").toBeGreaterThanOrEqual(1);
    for (const { run, chunksBeforeKill } of s.cutPlain) {
      const where = describeRun(run, s);
      expect(run.error, where).toBeUndefined();
      expect(run.oddities, where).toEqual([]);
      expect(["length", "stop"], where).toContain(run.finishReason);
      expect(run.chunks, where).toBeGreaterThan(chunksBeforeKill);
      // One chunk per token, and usage counts what the client received, across both instances.
      expect(run.completionTokens, where).toBe(run.chunks);
      if (run.finishReason === "length") expect(run.chunks, where).toBe(PLAIN_MAX_TOKENS);
    }
    // The other plain streams completed too.
    for (const run of s.plainRuns) expect(run.error, describeRun(run, s)).toBeUndefined();
  });

  it("serves tool-call streams started after the kill on the surviving worker", () => {
    const s = requireScenario();
    for (const run of s.afterKill) {
      expect(run.instance, describeRun(run, s)).toBe(s.survivor.instanceId);
      expect(toolRunProblems(run), describeRun(run, s)).toEqual([]);
      expect(run.error, describeRun(run, s)).toBeUndefined();
    }
  });
});
