import { ChatModelFunctionsDocumentationGenerator, GeneralChatWrapper, LlamaText, type ChatModelFunctions } from "node-llama-cpp";

/**
 * SMMF's chat format for a model without a chat template: a plain transcript ("### User" / "### Assistant"
 * titles), node-llama-cpp's general call syntax (`||call: name({...})`, the result after it as `||result: ...`),
 * and a short system text documenting the tools: node-llama-cpp's own is ~500 tokens, which a small model pays
 * for on every request with tools.
 */
export class FallbackChatWrapper extends GeneralChatWrapper {
  override readonly wrapperName = "fallback";

  constructor() {
    super({ userMessageTitle: "User", modelResponseTitle: "Assistant" });
  }

  override generateAvailableFunctionsSystemText(availableFunctions: ChatModelFunctions, { documentParams = true }: { documentParams?: boolean }): LlamaText {
    const docs = new ChatModelFunctionsDocumentationGenerator(availableFunctions);
    if (!docs.hasAnyFunctions) return LlamaText([]);
    return LlamaText.joinValues("\n", [
      "The assistant may call these functions:",
      docs.getTypeScriptFunctionSignatures({ documentParams }),
      "A call is written like this, and its result follows it:",
      LlamaText([this.generateFunctionCall("functionName", { param: "value" }), "\n||result: ..."]),
    ]);
  }
}
