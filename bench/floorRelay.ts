// A floor for `npm run bench:gateway`: the leanest relay Node can be, hand-written for this one request shape
// and nothing else (no auth, routing, limits, logs, metrics, retries or validation). It reads the client's JSON,
// asks the upstream (argument: its port) for a stream over a keep-alive pool, parses the SSE, and answers one
// chat.completion, with `x-smmf-overhead-ms` (its time less the upstream's) as SMMF's gateway sends it. What it
// allocates and how fast it goes is what Node's HTTP/1 server and client cost on this machine. Prints `PORT <n>`.
import http from "node:http";
import type { AddressInfo } from "node:net";

const upstreamPort = Number(process.argv[2]);
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

interface Chunk {
  choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
  usage?: unknown;
}

const server = http.createServer((req, res) => {
  const started = performance.now();
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = JSON.parse(Buffer.concat(chunks).toString()) as { model: string; messages: unknown; max_tokens?: number };
    const upstreamBody = JSON.stringify({ model: "mock", messages: body.messages, max_tokens: body.max_tokens, stream: true, stream_options: { include_usage: true } });
    const asked = performance.now();
    const upstream = http.request({ host: "127.0.0.1", port: upstreamPort, path: "/v1/chat/completions", method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(upstreamBody) } }, (answer) => {
      let text = "";
      let rest = "";
      let usage: unknown;
      let finish: string | null = null;
      answer.setEncoding("utf8");
      answer.on("data", (s: string) => {
        const events = (rest + s).split("\n\n");
        rest = events.pop()!;
        for (const e of events) {
          if (!e.startsWith("data: ") || e === "data: [DONE]") continue;
          const chunk = JSON.parse(e.slice(6)) as Chunk;
          if (chunk.usage) usage = chunk.usage;
          const choice = chunk.choices?.[0];
          if (choice) {
            text += choice.delta?.content ?? "";
            finish = choice.finish_reason ?? finish;
          }
        }
      });
      answer.on("end", () => {
        const upstreamMs = performance.now() - asked;
        const out = JSON.stringify({ id: "chatcmpl-1", object: "chat.completion", created: Math.floor(Date.now() / 1000), model: body.model, choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: finish }], usage });
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(out), "x-smmf-overhead-ms": (performance.now() - started - upstreamMs).toFixed(3) });
        res.end(out);
      });
    });
    upstream.end(upstreamBody);
  });
});
server.keepAliveTimeout = 120_000;
server.listen(0, "127.0.0.1", () => console.log(`PORT ${(server.address() as AddressInfo).port}`));
