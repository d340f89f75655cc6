import type { ChatItem } from "./openaiResponses.js";

/** A stored response: the object GET /v1/responses/{id} answers, and the conversation a next response continues. */
export interface StoredResponse {
  response: Record<string, unknown>;
  /** The conversation up to and including this response's output, as chat messages. */
  conversation: ChatItem[];
  /** The API key that made it ("" without keys): only that key reads or continues it. */
  owner: string;
  size: number;
  storedAt: number;
}

export interface ResponseStoreLimits {
  /** Most responses kept. */
  maxResponses: number;
  /** Most characters kept (the stored objects' JSON), over all responses. */
  maxChars: number;
  /** How long a response is kept, in ms. */
  ttlMs: number;
}

/** Defaults (README, Responses API): 1,000 responses, 64 Mi characters, one hour. */
export const DEFAULT_RESPONSE_STORE: ResponseStoreLimits = { maxResponses: 1_000, maxChars: 64 * 1024 * 1024, ttlMs: 60 * 60 * 1000 };

/**
 * The responses a gateway keeps for `previous_response_id` and GET /v1/responses/{id}: in this gateway's memory,
 * bounded by count, size and age; the oldest go first. A gateway that restarts, or another gateway, does not
 * have them: a request that names one it does not have gets a 404 saying so.
 */
export class ResponseStore {
  private readonly entries = new Map<string, StoredResponse>();
  private chars = 0;

  constructor(
    private readonly limits: ResponseStoreLimits = DEFAULT_RESPONSE_STORE,
    private readonly now: () => number = Date.now,
  ) {}

  put(id: string, entry: Omit<StoredResponse, "size" | "storedAt">): void {
    const size = JSON.stringify(entry.response).length + JSON.stringify(entry.conversation).length;
    if (size > this.limits.maxChars) return;
    this.delete(id);
    this.entries.set(id, { ...entry, size, storedAt: this.now() });
    this.chars += size;
    this.evict();
  }

  /** The response `id` if it is kept and belongs to `owner`. */
  get(id: string, owner: string): StoredResponse | undefined {
    this.evict();
    const entry = this.entries.get(id);
    return entry && entry.owner === owner ? entry : undefined;
  }

  delete(id: string): boolean {
    const entry = this.entries.get(id);
    if (!entry) return false;
    this.entries.delete(id);
    this.chars -= entry.size;
    return true;
  }

  get size(): number {
    return this.entries.size;
  }

  private evict(): void {
    const expired = this.now() - this.limits.ttlMs;
    for (const [id, entry] of this.entries) {
      if (entry.storedAt > expired && this.entries.size <= this.limits.maxResponses && this.chars <= this.limits.maxChars) break;
      this.delete(id);
    }
  }
}
