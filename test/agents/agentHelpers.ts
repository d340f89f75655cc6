import { Ajv, type ValidateFunction } from "ajv";
import OpenAI, { APIError, BadRequestError } from "openai";
import type { ChatCompletionFunctionTool, ChatCompletionMessageToolCall } from "openai/resources/chat/completions";
import { expect } from "vitest";

/** Shared pieces of the issue-15 integration tests (tools, structured outputs, logprobs, n). */

export const MODEL = "stories260K";

/** A tool whose parameters use nested objects, enums, numbers, integers, booleans, a bounded array and bounded strings. */
export const WEATHER_TOOL: ChatCompletionFunctionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather forecast.",
    strict: true,
    parameters: {
      type: "object",
      properties: {
        location: {
          type: "object",
          properties: {
            city: { type: "string", maxLength: 12 },
            country: { type: "string", enum: ["FR", "DE", "US"] },
          },
          required: ["city", "country"],
          additionalProperties: false,
        },
        units: { type: "string", enum: ["celsius", "fahrenheit"] },
        days: { type: "integer" },
        threshold: { type: "number" },
        hourly: { type: "boolean" },
        tags: { type: "array", items: { type: "string", maxLength: 8 }, maxItems: 2 },
      },
      required: ["location", "units", "days", "threshold", "hourly", "tags"],
      additionalProperties: false,
    },
  },
};

export const BOOKING_TOOL: ChatCompletionFunctionTool = {
  type: "function",
  function: {
    name: "book_table",
    description: "Book a table.",
    strict: true,
    parameters: {
      type: "object",
      properties: {
        restaurant: { type: "string", maxLength: 12 },
        party_size: { type: "integer" },
        options: {
          type: "object",
          properties: {
            outdoor: { type: "boolean" },
            slot: { type: "string", enum: ["lunch", "dinner"] },
          },
          required: ["outdoor", "slot"],
          additionalProperties: false,
        },
      },
      required: ["restaurant", "party_size", "options"],
      additionalProperties: false,
    },
  },
};

export const TOOLS: ChatCompletionFunctionTool[] = [WEATHER_TOOL, BOOKING_TOOL];

/** Short on purpose: every tool request also carries the tools' documentation (~450 prompt tokens for TOOLS). */
export const TOOL_MESSAGES = [
  { role: "system" as const, content: "Use the tools." },
  { role: "user" as const, content: "Weather in Paris? And book a table for two." },
];

const ajv = new Ajv({ allErrors: true });
const validators = new Map<string, ValidateFunction>();
for (const tool of TOOLS) validators.set(tool.function.name, ajv.compile(tool.function.parameters as object));

/**
 * An OpenAI client for the test server with a long timeout: grammar-constrained tool calls carry a prompt of
 * several hundred tokens, and many run at once on one CPU thread.
 */
export function patientClient(url: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 300_000 });
}

/** Compiles a JSON schema once (cached by its text). */
export function validatorFor(schema: object): ValidateFunction {
  const key = JSON.stringify(schema);
  let v = validators.get(key);
  if (!v) {
    v = ajv.compile(schema);
    validators.set(key, v);
  }
  return v;
}

/**
 * Checks one tool call: id "call_...", type "function", a declared tool's name, arguments that JSON.parse
 * and validate against that tool's parameters. Returns a problem description, or undefined when valid.
 */
export function toolCallProblem(call: ChatCompletionMessageToolCall, tools: ChatCompletionFunctionTool[] = TOOLS): string | undefined {
  if (call.type !== "function") return `type is ${JSON.stringify(call.type)}`;
  if (typeof call.id !== "string" || !call.id.startsWith("call_")) return `id ${JSON.stringify(call.id)} does not start with call_`;
  const tool = tools.find((t) => t.function.name === call.function.name);
  if (!tool) return `unknown function name ${JSON.stringify(call.function.name)}`;
  if (typeof call.function.arguments !== "string") return `arguments is not a string: ${JSON.stringify(call.function.arguments)}`;
  let args: unknown;
  try {
    args = JSON.parse(call.function.arguments);
  } catch (err) {
    return `arguments do not parse (${(err as Error).message}): ${call.function.arguments}`;
  }
  const validate = validatorFor(tool.function.parameters as object);
  if (!validate(args)) return `arguments do not match the schema of ${tool.function.name} (${ajv.errorsText(validate.errors)}): ${call.function.arguments}`;
  return undefined;
}

/**
 * How many seeded tries a test makes: `n` (the count the specification asks for), or fewer when the
 * environment variable SMMF_AGENT_TRIES caps it (e.g. SMMF_AGENT_TRIES=10 for a quick local run).
 */
export function tries(n: number): number {
  const cap = Number(process.env.SMMF_AGENT_TRIES);
  return Number.isInteger(cap) && cap > 0 ? Math.min(n, cap) : n;
}

/** Runs fn(i) for i in [0, count) with at most `concurrency` at once; results in order. */
export async function runPool<T>(count: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

/** Awaits a request that must fail with 400 (BadRequestError); checks param with a string (exact) or a RegExp. */
export async function expectBadRequest(promise: Promise<unknown>, param: string | RegExp): Promise<APIError> {
  const err = await promise.then(
    (value) => ({ unexpectedSuccess: value }),
    (e: unknown) => e,
  );
  if (!(err instanceof APIError)) throw new Error(`expected a 400, got ${err instanceof Error ? err.stack : JSON.stringify(err)?.slice(0, 2000)}`);
  expect(err, `status ${err.status}: ${err.message}`).toBeInstanceOf(BadRequestError);
  expect(err.status).toBe(400);
  const body = err.error as { message?: unknown; type?: unknown } | undefined;
  expect(typeof body?.message).toBe("string");
  expect(body?.type).toBe("invalid_request_error");
  if (typeof param === "string") expect(err.param).toBe(param);
  else expect(err.param ?? "").toMatch(param);
  return err;
}

/** The UTF-8 bytes of a string, as numbers. */
export function utf8(text: string): number[] {
  return [...Buffer.from(text, "utf8")];
}

/** Whether a token string is whole UTF-8 text (a token that holds part of a multi-byte character is not). */
export function isWholeText(token: string): boolean {
  return !token.includes("\uFFFD");
}
