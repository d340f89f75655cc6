import { startTestServer } from "../helpers/startTestServer.js";
import { TOOLS, TOOL_MESSAGES, MODEL, WEATHER_TOOL, BOOKING_TOOL } from "./agentHelpers.js";
const server = await startTestServer({ sequences: 8 });
const pt = async (label: string, body: any) => { const r = await server.openai.chat.completions.create({ model: MODEL, max_tokens: 1, ...body }); console.log(label, r.usage!.prompt_tokens); };
await pt("plain TOOL_MESSAGES", { messages: TOOL_MESSAGES });
await pt("hi", { messages: [{ role: "user", content: "hi" }] });
await pt("hi + weather", { messages: [{ role: "user", content: "hi" }], tools: [WEATHER_TOOL] });
await pt("hi + booking", { messages: [{ role: "user", content: "hi" }], tools: [BOOKING_TOOL] });
await pt("hi + both", { messages: [{ role: "user", content: "hi" }], tools: TOOLS });
const compactW = { type: "function", function: { name: "get_weather", strict: true, parameters: { type: "object", properties: {
  place: { type: "object", properties: { city: { type: "string", maxLength: 12 }, country: { type: "string", enum: ["FR", "US"] } }, required: ["city", "country"], additionalProperties: false },
  days: { type: "integer" }, temp: { type: "number" }, hourly: { type: "boolean" }, tags: { type: "array", items: { type: "string", maxLength: 8 }, maxItems: 2 } },
  required: ["place", "days", "temp", "hourly", "tags"], additionalProperties: false } } };
const compactB = { type: "function", function: { name: "book_table", strict: true, parameters: { type: "object", properties: { name: { type: "string", maxLength: 12 }, seats: { type: "integer" }, slot: { type: "string", enum: ["lunch", "dinner"] } }, required: ["name", "seats", "slot"], additionalProperties: false } } };
await pt("hi + compactW", { messages: [{ role: "user", content: "hi" }], tools: [compactW] });
await pt("hi + compactB", { messages: [{ role: "user", content: "hi" }], tools: [compactB] });
await pt("hi + both compact", { messages: [{ role: "user", content: "hi" }], tools: [compactW, compactB] });
await pt("hi + both compact, required", { messages: [{ role: "user", content: "hi" }], tools: [compactW, compactB], tool_choice: "required" });
await pt("hi + both compact, named", { messages: [{ role: "user", content: "hi" }], tools: [compactW, compactB], tool_choice: { type: "function", function: { name: "book_table" } } });
await pt("TOOL_MESSAGES + both, required", { messages: TOOL_MESSAGES, tools: TOOLS, tool_choice: "required" });
await pt("TOOL_MESSAGES + both, auto", { messages: TOOL_MESSAGES, tools: TOOLS });
await server.close();
