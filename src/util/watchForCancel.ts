import type { GenerateRequest } from "../gen/smmf/v1/inference_pb.js";

/** Reads the rest of a Generate request stream in the background and calls `onCancel` on a `cancel` message or a broken stream. */
export function watchForCancel(requests: AsyncIterator<GenerateRequest>, onCancel: () => void): void {
  void (async () => {
    try {
      for (;;) {
        const next = await requests.next();
        if (next.done) return;
        if (next.value.kind.case === "cancel") return onCancel();
      }
    } catch {
      onCancel();
    }
  })();
}
