import { resolveChatWrapper, type ChatWrapper, type LlamaModel } from "node-llama-cpp";
import { FallbackChatWrapper } from "./FallbackChatWrapper.js";

/**
 * The chat wrapper of an instance. With "auto", a model whose GGUF carries a chat template
 * (`tokenizer.chat_template`) uses it; a model without one (a base model) uses the fallback, a plain
 * transcript: the system prompt, then "### User\n…" and "### Assistant\n…" turns, stopping at the next title
 * (see FallbackChatWrapper).
 */
export function resolveChatTemplate(model: LlamaModel, mode: "auto" | "fallback"): { wrapper: ChatWrapper; name: string } {
  const fallback = { wrapper: new FallbackChatWrapper(), name: "fallback" };
  if (mode === "fallback") return fallback;
  const template = (model.fileInfo.metadata as { tokenizer?: { chat_template?: unknown } }).tokenizer?.chat_template;
  if (typeof template !== "string" || template.length === 0) return fallback;
  try {
    const wrapper = resolveChatWrapper(model);
    return { wrapper, name: wrapper.wrapperName };
  } catch {
    return fallback;
  }
}
