import type { ChatHistoryItem, ChatWrapper, LlamaModel, LlamaText, Token } from "node-llama-cpp";
import type { ChatTurn } from "./Engine.js";

export interface ChatPrompt {
  tokens: Token[];
  stopTriggers: LlamaText[];
}

/** Chat history in node-llama-cpp's form, ending with the empty model turn the answer goes into. */
export function toChatHistory(messages: ChatTurn[], continuation = ""): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = messages.map((m) =>
    m.role === "assistant" ? { type: "model", response: [m.content] } : { type: m.role, text: m.content },
  );
  // The last model turn is left open: the answer goes into it, after any continuation.
  history.push({ type: "model", response: continuation ? [continuation] : [] });
  return history;
}

/**
 * Renders chat messages with the instance's chat wrapper into prompt tokens (without the leading BOS,
 * which the completion adds) and the wrapper's stop triggers.
 */
export function renderChatPrompt(model: LlamaModel, wrapper: ChatWrapper, messages: ChatTurn[], continuation?: string): ChatPrompt {
  const state = wrapper.generateContextState({ chatHistory: toChatHistory(messages, continuation) });
  const tokens = state.contextText.tokenize(model.tokenizer);
  if (tokens.length > 0 && model.tokens.bos != null && tokens[0] === model.tokens.bos) tokens.shift();
  return { tokens, stopTriggers: state.stopGenerationTriggers };
}
