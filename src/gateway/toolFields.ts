import { create } from "@bufbuild/protobuf";
import {
  ResponseFormat_Type,
  ResponseFormatSchema,
  ToolChoiceSchema,
  ToolSchema,
  type ResponseFormat,
  type Tool,
  type ToolChoice,
} from "../gen/smmf/v1/inference_pb.js";
import { TOOL_NAME } from "../worker/parseGenerateStart.js";
import { invalidField } from "./fields.js";
import type { PromptChars } from "./requestCaps.js";

/** Most tools in one request (OpenAI's limit). */
export const MAX_TOOLS = 128;

type Body = Record<string, unknown>;

function isObject(value: unknown): value is Body {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function present(value: unknown): boolean {
  return value !== undefined && value !== null;
}

/** `tools`: function tools with JSON-schema parameters. */
export function parseTools(value: unknown, chars: PromptChars): Tool[] {
  if (!present(value)) return [];
  if (!Array.isArray(value)) throw invalidField("tools", "'tools' must be an array of tools.");
  if (value.length > MAX_TOOLS) throw invalidField("tools", `'tools' takes at most ${MAX_TOOLS} tools.`);
  const names = new Set<string>();
  return value.map((tool, i) => {
    const at = `tools[${i}]`;
    if (!isObject(tool)) throw invalidField(at, `${at} must be an object.`);
    if (tool.type !== "function") throw invalidField(`${at}.type`, `${at}.type must be 'function'; other tool types are not supported.`);
    const fn = tool.function;
    if (!isObject(fn)) throw invalidField(`${at}.function`, `${at}.function must be an object.`);
    if (typeof fn.name !== "string" || !TOOL_NAME.test(fn.name)) {
      throw invalidField(`${at}.function.name`, `${at}.function.name must be 1 to 64 letters, digits, '_' or '-'.`);
    }
    if (names.has(fn.name)) throw invalidField(`${at}.function.name`, `${at}.function.name '${fn.name}' is declared twice.`);
    names.add(fn.name);
    if (present(fn.description) && typeof fn.description !== "string") throw invalidField(`${at}.function.description`, `${at}.function.description must be a string.`);
    if (present(fn.parameters) && !isObject(fn.parameters)) throw invalidField(`${at}.function.parameters`, `${at}.function.parameters must be a JSON Schema object.`);
    if (present(fn.strict) && typeof fn.strict !== "boolean") throw invalidField(`${at}.function.strict`, `${at}.function.strict must be a boolean.`);
    const parametersJson = present(fn.parameters) ? JSON.stringify(fn.parameters) : "";
    const description = typeof fn.description === "string" ? fn.description : "";
    chars.add(parametersJson);
    chars.add(description);
    return create(ToolSchema, { name: fn.name, description, parametersJson, strict: fn.strict === true });
  });
}

/** `tool_choice`: "auto", "none", "required" or a named function (which must be one of the tools). */
export function parseToolChoice(value: unknown, tools: readonly Tool[]): ToolChoice | undefined {
  if (!present(value)) return undefined;
  if (value === "auto" || value === "none" || value === "required") {
    if (value === "required" && tools.length === 0) throw invalidField("tool_choice", "'tool_choice' is 'required' but no 'tools' are given.");
    return create(ToolChoiceSchema, { choice: { case: "mode", value } });
  }
  if (isObject(value) && value.type === "function" && isObject(value.function) && typeof value.function.name === "string") {
    const name = value.function.name;
    if (!tools.some((t) => t.name === name)) throw invalidField("tool_choice", `'tool_choice' names the function '${name}', which is not among 'tools'.`);
    return create(ToolChoiceSchema, { choice: { case: "functionName", value: name } });
  }
  throw invalidField("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}.");
}

/** `response_format`: text, json_object, or json_schema with a name and a schema. */
export function parseResponseFormat(value: unknown, chars: PromptChars): ResponseFormat | undefined {
  if (!present(value)) return undefined;
  if (!isObject(value)) throw invalidField("response_format", "'response_format' must be an object.");
  switch (value.type) {
    case "text":
      return create(ResponseFormatSchema, { type: ResponseFormat_Type.TEXT });
    case "json_object":
      return create(ResponseFormatSchema, { type: ResponseFormat_Type.JSON_OBJECT });
    case "json_schema": {
      const spec = value.json_schema;
      if (!isObject(spec)) throw invalidField("response_format.json_schema", "'response_format.json_schema' must be an object with 'name' and 'schema'.");
      if (typeof spec.name !== "string" || !TOOL_NAME.test(spec.name)) {
        throw invalidField("response_format.json_schema.name", "'response_format.json_schema.name' must be 1 to 64 letters, digits, '_' or '-'.");
      }
      if (present(spec.schema) && !isObject(spec.schema)) throw invalidField("response_format.json_schema.schema", "'response_format.json_schema.schema' must be a JSON Schema object.");
      if (present(spec.strict) && typeof spec.strict !== "boolean") throw invalidField("response_format.json_schema.strict", "'response_format.json_schema.strict' must be a boolean.");
      const schemaJson = JSON.stringify(spec.schema ?? {});
      chars.add(schemaJson);
      return create(ResponseFormatSchema, { type: ResponseFormat_Type.JSON_SCHEMA, name: spec.name, schemaJson, strict: spec.strict === true });
    }
    default:
      throw invalidField("response_format.type", "'response_format.type' must be 'text', 'json_object' or 'json_schema'.");
  }
}
