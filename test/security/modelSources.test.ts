import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// Through the operating API, as an attacker would try it: model sources that name the worker's files or
// addresses the operator did not allow (a loopback listener counts the connections it gets: none).
let server: TestServer;
let listener: Server;
let connections = 0;

beforeAll(async () => {
  server = await startTestServer();
  listener = createServer((_req, res) => res.end("GGUF"));
  listener.on("connection", () => connections++);
  await new Promise<void>((r) => listener.listen(0, "127.0.0.1", r));
}, 60_000);

afterAll(async () => {
  await server?.close();
  await new Promise((r) => listener?.close(r));
});

async function start(source: string) {
  const res = await fetch(`${server.url}/api/v1/models`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "probe", source, replicas: 1 }) });
  return { status: res.status, text: await res.text() };
}

describe("model sources through the API", () => {
  it("a worker's files outside its model folder are refused alike, with nothing of the file and no word of whether it exists", async () => {
    for (const source of ["/etc/passwd", "../../../../../../etc/passwd", "file:///etc/passwd", "/etc/no-such-file"]) {
      const { status, text } = await start(source);
      expect(status, source).toBe(400);
      expect(JSON.parse(text).error).toMatchObject({ code: "failed_precondition", param: "source" });
      expect(text, source).toMatch(/'source' is not an allowed model source on worker/);
      expect(text).not.toMatch(/root:|does not exist|passwd/);
    }
  });

  it("http(s) sources at addresses the operator did not allow are refused before any connection", async () => {
    const port = (listener.address() as AddressInfo).port;
    for (const source of [`http://127.0.0.1:${port}/m.gguf`, `http://localhost:${port}/m.gguf`, `http://[::1]:${port}/m.gguf`]) {
      const { status, text } = await start(source);
      expect(status, source).toBe(400);
      expect(text, source).toMatch(/not an allowed model source/);
    }
    expect(connections).toBe(0);
  });
});
