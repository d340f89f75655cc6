import type { SmmfConfig } from "../config/SmmfConfig.js";
import type { RouterOptions } from "./InferenceRouter.js";

/** The gateway's routing settings from the configuration. */
export function routingOptions(config: SmmfConfig): Omit<RouterOptions, "logger"> {
  return {
    defaultPolicy: config.policy,
    policies: config.modelPolicies,
    maxAttempts: config.maxAttempts,
    queueSize: config.queueSize,
    queueTimeoutMs: config.queueTimeoutMs,
  };
}
