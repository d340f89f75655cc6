import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { WorkerInfoSchema } from "../gen/smmf/v1/instance_pb.js";
import { SessionResponseSchema, type SessionRequest, type SessionResponse } from "../gen/smmf/v1/worker_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { createLogger } from "../telemetry/createLogger.js";
import type { WorkerServiceClients } from "./WorkerServiceClients.js";
import { WorkerSessions } from "./WorkerSessions.js";

const worker = create(WorkerInfoSchema, { workerId: "w1", address: "http://w1.invalid" });

/** A worker's Session that sends one status, then nothing: it never answers a command. */
function silentWorker() {
  const opened: AbortSignal[] = [];
  const clients = {
    get: () => ({
      async *session(_requests: AsyncIterable<SessionRequest>, options: { signal: AbortSignal }): AsyncGenerator<SessionResponse> {
        opened.push(options.signal);
        yield create(SessionResponseSchema, { event: { case: "status", value: { worker, instances: [] } } });
        await new Promise<void>((_resolve, reject) => options.signal.addEventListener("abort", () => reject(options.signal.reason)));
      },
    }),
  } as unknown as WorkerServiceClients;
  return { clients, opened };
}

async function until(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("WorkerSessions", () => {
  it("fails a command the worker does not answer within its deadline with deadline_exceeded", async () => {
    const { clients } = silentWorker();
    const sessions = new WorkerSessions({ controllerId: "c", term: 1n, clients, logger: createLogger("silent"), onChange: () => undefined });
    try {
      sessions.sync([worker]);
      await until("the session to open", () => sessions.statusSeq("w1") === 1);
      const started = Date.now();
      const err = await sessions.send("w1", { case: "unload", value: { instanceId: "x", drain: true } }, { timeoutMs: 100 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SmmfError);
      expect((err as SmmfError).code).toBe("deadline_exceeded");
      expect((err as SmmfError).message).toMatch(/did not answer the 'unload' command within 100 ms/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(95);
    } finally {
      sessions.close();
    }
  });

  it("opens a session again when the worker has said nothing for the silence limit; its pending commands fail", async () => {
    const { clients, opened } = silentWorker();
    const sessions = new WorkerSessions({ controllerId: "c", term: 1n, clients, logger: createLogger("silent"), onChange: () => undefined, silenceMs: 150 });
    try {
      sessions.sync([worker]);
      await until("the session to open", () => sessions.statusSeq("w1") === 1);
      const pending = sessions.send("w1", { case: "unload", value: { instanceId: "x" } }).catch((e: unknown) => e);
      await until("a second session", () => opened.length === 2 && sessions.statusSeq("w1") === 2);
      expect(opened[0].aborted).toBe(true);
      expect(((await pending) as SmmfError).code).toBe("unavailable");
    } finally {
      sessions.close();
    }
  });
});
