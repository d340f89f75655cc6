import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelFunctions, ChatModelResponse, ChatWrapper, LlamaModel, LlamaText, Token } from "node-llama-cpp";
import type { ChatTurn } from "./Engine.js";

export interface ChatPrompt {
  tokens: Token[];
  stopTriggers: LlamaText[];
  /** The rendered prompt, up to where the answer goes. */
  contextText: LlamaText;
}

/** A tool result as node-llama-cpp renders it: JSON when the text is JSON, else the text itself. */
function resultValue(content: string): unknown {
  try {
    return JSON.parse(content);
  } catch {
    return content;
  }
}

function paramsValue(args: string): unknown {
  if (args.trim() === "") return undefined;
  try {
    return JSON.parse(args);
  } catch {
    return args;
  }
}

/**
 * Chat history in node-llama-cpp's form, ending with the model turn the answer goes into. node-llama-cpp keeps
 * a tool call and its result inside the model's response (the answer goes on after the result), so an assistant
 * message with tool calls takes in the `tool` messages that answer them, and the assistant text that follows
 * them (up to the next user or system message) continues the same response. When the last messages are tool
 * results, the answer continues that response; otherwise it opens a new one.
 */
export function toChatHistory(messages: ChatTurn[], continuation = ""): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  let open: (ChatModelResponse & { response: ChatModelResponse["response"] }) | undefined;
  let calls = new Map<string, ChatModelFunctionCall>();
  let lastWasTool = false;
  for (const m of messages) {
    lastWasTool = false;
    if (m.role === "tool") {
      const call = calls.get(m.toolCallId ?? "");
      if (call) call.result = resultValue(m.content);
      lastWasTool = true;
      continue;
    }
    if (m.role === "assistant") {
      // Text after tool results continues the response that called the tools.
      const continues = open !== undefined && calls.size > 0;
      if (!continues) {
        open = { type: "model", response: [] };
        history.push(open);
        calls = new Map();
      }
      if (m.content) open!.response.push(m.content);
      for (const c of m.toolCalls ?? []) {
        const call: ChatModelFunctionCall = { type: "functionCall", name: c.name, params: paramsValue(c.arguments), result: undefined };
        calls.set(c.id, call);
        open!.response.push(call);
      }
      continue;
    }
    open = undefined;
    calls = new Map();
    history.push(m.role === "system" ? { type: "system", text: m.content } : { type: "user", text: m.content });
  }
  if (lastWasTool && open) {
    if (continuation) open.response.push(continuation);
  } else {
    history.push({ type: "model", response: continuation ? [continuation] : [] });
  }
  return history;
}

/**
 * Renders chat messages with the instance's chat wrapper into prompt tokens (without the leading BOS,
 * which the completion adds) and the wrapper's stop triggers; with `functions`, the wrapper documents them
 * in the prompt (its own way for a template that knows tools).
 */
export function renderChatPrompt(model: LlamaModel, wrapper: ChatWrapper, messages: ChatTurn[], continuation?: string, functions?: ChatModelFunctions): ChatPrompt {
  const state = wrapper.generateContextState({ chatHistory: toChatHistory(messages, continuation), availableFunctions: functions, documentFunctionParams: functions ? true : undefined });
  return { tokens: tokensWithoutBos(model, state.contextText), stopTriggers: state.stopGenerationTriggers, contextText: state.contextText };
}

/** The tokens of a text, without a leading BOS (the completion adds it). */
export function tokensWithoutBos(model: LlamaModel, text: LlamaText): Token[] {
  const tokens = text.tokenize(model.tokenizer);
  if (tokens.length > 0 && model.tokens.bos != null && tokens[0] === model.tokens.bos) tokens.shift();
  return tokens;
}
