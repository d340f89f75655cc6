import { createHandlerContext } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import { ControllerService, EventType, type WatchEventsResponse } from "../gen/smmf/v1/controller_pb.js";
import { MemoryRegistry } from "../registry/MemoryRegistry.js";
import { createLogger } from "../telemetry/createLogger.js";
import { createControlPlane } from "./createControlPlane.js";
import { createControllerService, MAX_PENDING_EVENTS, MAX_WATCHERS } from "./createControllerService.js";

const plane = createControlPlane(new MemoryRegistry(), createLogger("silent"));
const service = createControllerService(plane);
afterAll(() => plane.close());

const context = () => createHandlerContext({ service: ControllerService, method: ControllerService.method.watchEvents, protocolName: "grpc", requestMethod: "POST", url: "http://127.0.0.1/smmf.v1.ControllerService/WatchEvents" });

describe("WatchEvents", () => {
  it("drops a watcher that falls too far behind with resource_exhausted, after the events it had; others go on", async () => {
    const slow = service.watchEvents({ model: "" } as never, context())[Symbol.asyncIterator]();
    const first = slow.next(); // subscribes; this watcher reads nothing more for now
    // A watcher of one model has one event waiting, far from the bound.
    const keeping = service.watchEvents({ model: "m5" } as never, context())[Symbol.asyncIterator]();
    const keptFirst = keeping.next();
    for (let i = 0; i < MAX_PENDING_EVENTS + 10; i++) plane.events.publish({ type: EventType.MODEL_STARTED, model: `m${i}` });
    expect(((await first).value as WatchEventsResponse).model).toBe("m0");
    let read = 1;
    const err = await (async () => {
      for (;;) {
        const r = await slow.next();
        if (r.done) return undefined;
        read++;
      }
    })().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "resource_exhausted", message: expect.stringMatching(/fell 1000 events behind and was dropped/) });
    // All events came at once: it had MAX_PENDING_EVENTS waiting when it was dropped, and read them all first.
    expect(read).toBe(MAX_PENDING_EVENTS);
    // The other watcher is not dropped: it has its event, and gets the next one.
    expect(((await keptFirst).value as WatchEventsResponse).model).toBe("m5");
    plane.events.publish({ type: EventType.MODEL_STOPPED, model: "m5" });
    expect(((await keeping.next()).value as WatchEventsResponse).type).toBe(EventType.MODEL_STOPPED);
    await keeping.return?.(undefined);
  });

  it("serves at most MAX_WATCHERS watchers at once: one more gets resource_exhausted, and a closed one makes room", async () => {
    // A watcher whose client goes away: its call context is aborted.
    const watch = () => {
      const ctx = context();
      const iterator = service.watchEvents({ model: "" } as never, ctx)[Symbol.asyncIterator]();
      return { abort: ctx, iterator, first: iterator.next() };
    };
    const open = Array.from({ length: MAX_WATCHERS }, watch);
    const extra = watch();
    await expect(extra.first).rejects.toMatchObject({ code: "resource_exhausted", message: expect.stringMatching(/1024 watchers are open/) });
    const closed = open.pop()!;
    closed.abort.abort();
    expect((await closed.first).done).toBe(true);
    const next = watch();
    plane.events.publish({ type: EventType.MODEL_STARTED, model: "room" });
    expect(((await next.first).value as WatchEventsResponse).model).toBe("room");
    // The others had "room" too; once their clients go, each stream ends and lets go of its subscription.
    for (const w of [...open, next]) w.abort.abort();
    for (const w of [...open, next]) expect((await w.iterator.next()).done).toBe(true);
    expect(plane.events.subscribers).toBe(0);
  });
});
