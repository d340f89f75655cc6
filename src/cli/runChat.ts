import { createInterface } from "node:readline";
import { parseCommandArgs } from "./parseCommandArgs.js";
import { authHeaders, serverUrl } from "./adminClient.js";
import { readSse } from "./readSse.js";

export const CHAT_USAGE = `Usage: smmf chat MODEL [flags]

Chats with MODEL through a gateway, streaming the answers. Type a message and press Enter; end with Ctrl-D.

Flags:
  --url URL            gateway (default http://127.0.0.1:8000; env SMMF_URL)
  --system TEXT        system prompt
  --max-tokens N       most tokens per answer (default 256)
  --temperature T      sampling temperature, 0 to 2

Exit codes: 0 done, 1 the gateway failed or could not be reached, 2 bad usage, 3 unknown model.
`;

interface Turn {
  role: "system" | "user" | "assistant";
  content: string;
}

/** `smmf chat MODEL`: an interactive streaming chat in the terminal (stdin → gateway → stdout). */
export async function runChat(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("chat", CHAT_USAGE, args, { url: { type: "string" }, system: { type: "string" }, "max-tokens": { type: "string" }, temperature: { type: "string" } });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) {
    process.stderr.write(`smmf chat: name one model\n\n${CHAT_USAGE}`);
    return 2;
  }
  const model = positionals[0];
  const url = serverUrl(values.url);
  const maxTokens = Number(values["max-tokens"] ?? 256);
  const temperature = values.temperature === undefined ? undefined : Number(values.temperature);
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || (temperature !== undefined && !(temperature >= 0 && temperature <= 2))) {
    process.stderr.write("smmf chat: --max-tokens must be a positive integer and --temperature between 0 and 2\n");
    return 2;
  }
  const history: Turn[] = values.system ? [{ role: "system", content: values.system }] : [];
  const interactive = process.stdin.isTTY === true;
  const lines = createInterface({ input: process.stdin, terminal: interactive });
  if (interactive) process.stdout.write(`chatting with ${model} at ${url} — Ctrl-D to end\n> `);
  for await (const line of lines) {
    const text = line.trim();
    if (!text) continue;
    history.push({ role: "user", content: text });
    let res: Response;
    try {
      res = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", ...authHeaders() },
        body: JSON.stringify({ model, messages: history, stream: true, max_tokens: maxTokens, temperature }),
      });
    } catch (err) {
      process.stderr.write(`smmf chat: cannot reach ${url}: ${(err as Error).cause ?? (err as Error).message}\n`);
      return 1;
    }
    if (!res.ok || !res.body) {
      const body = (await res.json().catch(() => undefined)) as { error?: { message?: string; code?: string } } | undefined;
      process.stderr.write(`smmf chat: ${body?.error?.message ?? `HTTP ${res.status}`}\n`);
      return res.status === 404 ? 3 : 1;
    }
    let answer = "";
    for await (const data of readSse(res.body)) {
      const event = JSON.parse(data) as { choices?: { delta?: { content?: string } }[]; error?: { message: string } };
      if (event.error) {
        process.stderr.write(`\nsmmf chat: ${event.error.message}\n`);
        return 1;
      }
      const piece = event.choices?.[0]?.delta?.content ?? "";
      answer += piece;
      process.stdout.write(piece);
    }
    process.stdout.write(interactive ? "\n> " : "\n");
    history.push({ role: "assistant", content: answer });
  }
  return 0;
}
