import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { WatchEventsResponseSchema, type EventType, type WatchEventsResponse } from "../gen/smmf/v1/controller_pb.js";

/** Fan-out of controller events to WatchEvents streams. */
export class EventHub {
  private readonly listeners = new Set<(event: WatchEventsResponse) => void>();

  publish(init: { type: EventType; model?: string; instanceId?: string; workerId?: string; message?: string }): void {
    if (this.listeners.size === 0) return;
    const event = create(WatchEventsResponseSchema, { ...init, time: timestampNow() });
    for (const listener of this.listeners) listener(event);
  }

  /** Listeners subscribed now. */
  get subscribers(): number {
    return this.listeners.size;
  }

  subscribe(listener: (event: WatchEventsResponse) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
