import type { GenerateResponse, GenerateStart } from "../gen/smmf/v1/inference_pb.js";
import type { AnyResponse } from "../net/sse.js";
import type { InferenceRouter } from "./InferenceRouter.js";
import type { RequestObservation } from "./RequestObservation.js";
import { SmmfError } from "../errors/SmmfError.js";

/** A generation that ended without its done message. */
export function incomplete(): SmmfError {
  return new SmmfError("unavailable", "the model instance ended the generation without finishing it");
}

/**
 * One REST request's generation, whatever the API dialect that answers it (chat and text completions,
 * Anthropic's messages, OpenAI's responses): routed with the request's observation (attempts, trace context),
 * cancelled when the client goes away, and let go by `finish()`, which cancels it unless the answer was sent.
 */
export class GenerationCall {
  private readonly abort = new AbortController();
  /** The instance of the latest attempt. */
  instanceId = "";
  readonly responses: AsyncGenerator<GenerateResponse>;
  private readonly onClose = () => this.abort.abort();

  constructor(
    router: InferenceRouter,
    private readonly res: AnyResponse,
    start: GenerateStart,
    obs: RequestObservation,
  ) {
    res.once("close", this.onClose);
    this.responses = router.generate(
      start,
      this.abort.signal,
      (instance, attempt) => {
        this.instanceId = instance.instanceId;
        obs.attempt(instance, attempt);
      },
      obs.traceHeaders(),
    );
  }

  /** Whether the client went away (or the call was let go). */
  get cancelled(): boolean {
    return this.abort.signal.aborted;
  }

  /** The first message; a generation that ends before sending one is an error (unavailable). */
  async first(): Promise<IteratorResult<GenerateResponse>> {
    const first = await this.responses.next();
    if (first.done) throw incomplete();
    return first;
  }

  /** Lets go of the generation: a response not ended by now cancels it. */
  finish(): void {
    void this.responses.return(undefined).catch(() => undefined);
    this.res.off("close", this.onClose);
    if (!this.res.writableEnded) this.abort.abort();
  }
}
