import type { ServiceImpl } from "@connectrpc/connect";
import { InferenceService } from "../gen/smmf/v1/inference_pb.js";
import { asConnectError } from "../errors/asConnectError.js";
import { linkSignals } from "../util/linkSignals.js";
import { readGenerateStart, watchForCancel } from "../util/watchForCancel.js";
import { parseGenerateStart } from "../worker/parseGenerateStart.js";
import type { InferenceRouter } from "./InferenceRouter.js";

/** InferenceService as the gateway serves it: each call goes to an instance of the requested model. */
export function createGatewayInferenceService(router: InferenceRouter): ServiceImpl<typeof InferenceService> {
  return {
    async *generate(requests, ctx) {
      const abort = linkSignals(ctx.signal);
      try {
        const iterator = requests[Symbol.asyncIterator]();
        const start = await readGenerateStart(iterator);
        parseGenerateStart(start);
        watchForCancel(iterator, () => abort.abort());
        yield* router.generate(start, abort.signal);
      } catch (err) {
        throw asConnectError(err);
      } finally {
        abort.abort();
      }
    },
    async embed(req, ctx) {
      try {
        return await router.embed(req, ctx.signal);
      } catch (err) {
        throw asConnectError(err);
      }
    },
    async countTokens(req, ctx) {
      try {
        return await router.countTokens(req, ctx.signal);
      } catch (err) {
        throw asConnectError(err);
      }
    },
  };
}
