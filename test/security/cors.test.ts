import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// What a browser sends and reads: preflights, and the CORS headers on answers, with and without listed origins.
let open: TestServer;
let listed: TestServer;

function call(server: TestServer, method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((done, fail) => {
    const req = request(`${server.url}${path}`, { method, headers }, (res) => {
      res.resume();
      res.on("end", () => done({ status: res.statusCode!, headers: res.headers }));
    });
    req.on("error", fail);
    req.end(body);
  });
}

beforeAll(async () => {
  open = await startTestServer();
  listed = await startTestServer({ corsOrigins: ["https://app.example.com"] });
}, 60_000);

afterAll(async () => {
  await open?.close();
  await listed?.close();
});

describe("CORS", () => {
  it("is off unless origins are configured: no Access-Control-Allow-Origin, so pages of other origins cannot read answers", async () => {
    const res = await call(open, "GET", "/v1/models", { origin: "https://evil.example" });
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("answers a listed origin's preflight and marks its answers readable; another origin gets neither", async () => {
    const preflight = await call(listed, "OPTIONS", "/v1/chat/completions", { origin: "https://app.example.com", "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" });
    expect(preflight.status).toBe(204);
    expect(preflight.headers["access-control-allow-origin"]).toBe("https://app.example.com");
    expect(String(preflight.headers["access-control-allow-headers"])).toMatch(/authorization/);
    const answer = await call(listed, "POST", "/v1/completions", { origin: "https://app.example.com", "content-type": "application/json" }, JSON.stringify({ model: "stories260K", prompt: "Once", max_tokens: 2 }));
    expect(answer.status).toBe(200);
    expect(answer.headers["access-control-allow-origin"]).toBe("https://app.example.com");
    expect(String(answer.headers["access-control-expose-headers"])).toMatch(/x-request-id/);
    const other = await call(listed, "OPTIONS", "/v1/chat/completions", { origin: "https://evil.example", "access-control-request-method": "POST" });
    expect(other.status).toBe(403);
    expect(other.headers["access-control-allow-origin"]).toBeUndefined();
    const otherAnswer = await call(listed, "GET", "/v1/models", { origin: "https://evil.example" });
    expect(otherAnswer.headers["access-control-allow-origin"]).toBeUndefined();
  });
});
