import type { GenerateRequest, GenerateStart } from "../gen/smmf/v1/inference_pb.js";
import { SmmfError } from "../errors/SmmfError.js";

/** Reads the first message of a Generate request stream, which must be `start`. */
export async function readGenerateStart(requests: AsyncIterator<GenerateRequest>): Promise<GenerateStart> {
  const first = await requests.next();
  if (first.done || first.value.kind.case !== "start") throw new SmmfError("invalid_argument", "the first Generate message must be 'start'");
  return first.value.kind.value;
}

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
