import { availableParallelism } from "node:os";

/**
 * CPU threads for llama.cpp when none is configured: 1 on machines with 2 cores or fewer (more threads
 * there fight the event loop and each other, and run far slower), otherwise half the cores, at most 16.
 */
export function defaultThreads(cores: number = availableParallelism()): number {
  if (cores <= 2) return 1;
  return Math.min(16, Math.floor(cores / 2));
}
