// A tiny, fast loopback mock of an OpenAI-compatible upstream for `npm run bench:gateway`, in its own process:
// every chat or text completion is answered with the same two-token answer (streamed as SSE when the request
// asks for a stream, as SMMF's relay always does; one JSON object otherwise), with usage. The answers are
// built once; a request's body is read and dropped unparsed, except for the one `"stream":true` test.
// Prints "PORT <n>" once it listens on 127.0.0.1.
import http from "node:http";
import type { AddressInfo } from "node:net";

const TEXT = ["Hello", " there"];

function sse(chat: boolean): Buffer {
  const chunk = (text: string, finish: string | null) => JSON.stringify({ id: "mock-1", object: chat ? "chat.completion.chunk" : "text_completion", created: 0, model: "mock", choices: [chat ? { index: 0, delta: { content: text }, finish_reason: finish } : { index: 0, text, finish_reason: finish }] });
  let out = "";
  for (const t of TEXT) out += `data: ${chunk(t, null)}\n\n`;
  out += `data: ${chunk("", "length")}\n\n`;
  out += `data: ${JSON.stringify({ id: "mock-1", object: chat ? "chat.completion.chunk" : "text_completion", created: 0, model: "mock", choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } })}\n\n`;
  return Buffer.from(`${out}data: [DONE]\n\n`);
}

function json(chat: boolean): Buffer {
  const text = TEXT.join("");
  const choice = chat ? { index: 0, message: { role: "assistant", content: text }, finish_reason: "length" } : { index: 0, text, finish_reason: "length" };
  return Buffer.from(JSON.stringify({ id: "mock-1", object: chat ? "chat.completion" : "text_completion", created: 0, model: "mock", choices: [choice], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } }));
}

const ANSWERS = {
  chat: { sse: sse(true), json: json(true) },
  text: { sse: sse(false), json: json(false) },
};
const SSE_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-cache" };
const JSON_HEADERS = { "content-type": "application/json" };
const STREAM = Buffer.from('"stream":true');

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const answers = req.url?.endsWith("/chat/completions") ? ANSWERS.chat : req.url?.endsWith("/completions") ? ANSWERS.text : undefined;
    if (!answers) {
      res.writeHead(404, JSON_HEADERS);
      return void res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
    }
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const stream = body.includes(STREAM);
    const answer = stream ? answers.sse : answers.json;
    res.writeHead(200, { ...(stream ? SSE_HEADERS : JSON_HEADERS), "content-length": answer.length });
    res.end(answer);
  });
});
server.keepAliveTimeout = 120_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`PORT ${(server.address() as AddressInfo).port}\n`));
process.on("SIGTERM", () => process.exit(0));
