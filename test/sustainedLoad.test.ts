import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "./helpers/startTestServer.js";

// Thousands of short requests on one gateway → worker connection. Each generation's gRPC stream must end
// with the worker's trailers, not with a reset from the gateway: HTTP/2 servers take a stream of resets for
// a "rapid reset" attack (nghttp2 allows a burst of 1000, then 33 a second) and close the connection with
// GOAWAY INTERNAL_ERROR, which failed every request on it (seen as 503 after ~2,500 requests).
const REQUESTS = 3_000;
const LANES = 8;
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ sequences: LANES, observability: "off" });
});

afterAll(async () => {
  await server?.close();
});

describe("sustained load", () => {
  it(`answers ${REQUESTS} short completions in a row on one worker connection, every one`, async () => {
    let next = 0;
    const failures: string[] = [];
    await Promise.all(
      Array.from({ length: LANES }, async () => {
        while (next < REQUESTS) {
          next++;
          try {
            const res = await server.openai.completions.create({ model: "stories260K", prompt: "Once", max_tokens: 1 });
            if (res.choices[0]?.finish_reason !== "length") failures.push(`finish_reason ${res.choices[0]?.finish_reason}`);
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      }),
    );
    expect(failures.slice(0, 3)).toEqual([]);
    expect(failures).toHaveLength(0);
  }, 120_000);
});
