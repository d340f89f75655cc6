import OpenAI from "openai";
import { DEFAULTS } from "../../src/config/loadConfig.js";
import type { SmmfConfig } from "../../src/config/SmmfConfig.js";
import { startEmbedded, type Embedded } from "../../src/embedded/startEmbedded.js";
import { createLogger } from "../../src/telemetry/createLogger.js";
import { testModelPath } from "./testModel.js";

export interface TestServer {
  embedded: Embedded;
  /** Base URL of the gateway, e.g. http://127.0.0.1:PORT */
  url: string;
  /** An official OpenAI client pointed at the gateway. */
  openai: OpenAI;
  close(): Promise<void>;
}

/** The embedded mode in this process on free ports, serving the test model as "stories260K". */
export async function startTestServer(overrides: Partial<SmmfConfig> = {}): Promise<TestServer> {
  const config: SmmfConfig = {
    ...DEFAULTS,
    port: 0,
    workerPort: 0,
    gpu: "off",
    threads: 1,
    models: [{ name: "stories260K", file: testModelPath() }],
    logLevel: "warn",
    ...overrides,
  };
  const embedded = await startEmbedded(config, createLogger(config.logLevel, "test"));
  const url = embedded.gateway.url;
  return {
    embedded,
    url,
    openai: new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 30_000 }),
    close: () => embedded.close(),
  };
}
