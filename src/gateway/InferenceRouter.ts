import { create } from "@bufbuild/protobuf";
import {
  GenerateRequestSchema,
  type CountTokensRequest,
  type CountTokensResponse,
  type EmbedRequest,
  type EmbedResponse,
  type GenerateRequest,
  type GenerateResponse,
  type GenerateStart,
} from "../gen/smmf/v1/inference_pb.js";
import type { Instance } from "../gen/smmf/v1/instance_pb.js";
import type { Registry } from "../registry/Registry.js";
import { toSmmfError } from "../errors/SmmfError.js";
import { pickInstance } from "./pickInstance.js";
import type { WorkerClients } from "./WorkerClients.js";

async function* oneMessage(message: GenerateRequest): AsyncIterable<GenerateRequest> {
  yield message;
}

/** Routes inference calls to instances from the registry, counting this gateway's requests in flight per instance. */
export class InferenceRouter {
  private readonly inFlight = new Map<string, number>();
  private readonly unsubscribe: () => void;

  constructor(private readonly registry: Registry, private readonly clients: WorkerClients) {
    this.unsubscribe = registry.subscribe(() => this.clients.retain(new Set(registry.snapshot().map((i) => i.address))));
  }

  private load = (instanceId: string): number => this.inFlight.get(instanceId) ?? 0;

  private enter(instance: Instance): () => void {
    this.inFlight.set(instance.instanceId, this.load(instance.instanceId) + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const n = this.load(instance.instanceId) - 1;
      if (n <= 0) this.inFlight.delete(instance.instanceId);
      else this.inFlight.set(instance.instanceId, n);
    };
  }

  /**
   * Picks an instance of `start.model` (throwing at once when there is none) and streams the generation
   * from it; aborting `signal` cancels it on the worker.
   */
  generate(start: GenerateStart, signal: AbortSignal): { instance: Instance; responses: AsyncGenerator<GenerateResponse> } {
    const instance = pickInstance(this.registry.snapshot(), start.model, this.load);
    const client = this.clients.get(instance.address).inference;
    const request = create(GenerateRequestSchema, { kind: { case: "start", value: { ...start, instanceId: instance.instanceId } } });
    const enter = () => this.enter(instance);
    async function* responses(): AsyncGenerator<GenerateResponse> {
      const leave = enter();
      try {
        yield* client.generate(oneMessage(request), { signal });
      } catch (err) {
        throw toSmmfError(err);
      } finally {
        leave();
      }
    }
    return { instance, responses: responses() };
  }

  async embed(req: EmbedRequest, signal: AbortSignal): Promise<EmbedResponse> {
    const instance = pickInstance(this.registry.snapshot(), req.model, this.load, { embeddings: true });
    const leave = this.enter(instance);
    try {
      return await this.clients.get(instance.address).inference.embed({ ...req, instanceId: instance.instanceId }, { signal });
    } catch (err) {
      throw toSmmfError(err);
    } finally {
      leave();
    }
  }

  async countTokens(req: CountTokensRequest, signal: AbortSignal): Promise<CountTokensResponse> {
    const instance = pickInstance(this.registry.snapshot(), req.model, this.load);
    try {
      return await this.clients.get(instance.address).inference.countTokens({ ...req, instanceId: instance.instanceId }, { signal });
    } catch (err) {
      throw toSmmfError(err);
    }
  }

  close(): void {
    this.unsubscribe();
    this.clients.close();
  }
}
