import type { SmmfError } from "./SmmfError.js";

/** The API dialects SMMF answers in: each has its own error shape (and, for a few codes, status). */
export type ApiDialect = "openai" | "anthropic";

/** The dialect of a REST path: Anthropic's Messages API under /v1/messages, OpenAI's everywhere else. */
export function dialectOf(path: string): ApiDialect {
  return path === "/v1/messages" || path.startsWith("/v1/messages/") ? "anthropic" : "openai";
}

/** An error as `dialect` answers it: the HTTP status and the body. */
export function errorAnswer(error: SmmfError, dialect: ApiDialect): { status: number; body: unknown } {
  if (dialect === "anthropic") return error.toAnthropic();
  return { status: error.httpStatus, body: error.toOpenAiBody() };
}
