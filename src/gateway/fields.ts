import { SmmfError } from "../errors/SmmfError.js";

/** Typed readers for JSON request fields; each throws invalid_argument naming the field. */
type Body = Record<string, unknown>;

function present(body: Body, name: string): boolean {
  return body[name] !== undefined && body[name] !== null;
}

export function invalidField(name: string, message: string): SmmfError {
  return new SmmfError("invalid_argument", message, { param: name });
}

export function requiredString(body: Body, name: string): string {
  const value = body[name];
  if (value === undefined || value === null) throw invalidField(name, `Missing required parameter: '${name}'.`);
  if (typeof value !== "string" || value.length === 0) throw invalidField(name, `'${name}' must be a non-empty string.`);
  return value;
}

export function optionalBoolean(body: Body, name: string): boolean | undefined {
  if (!present(body, name)) return undefined;
  if (typeof body[name] !== "boolean") throw invalidField(name, `'${name}' must be a boolean.`);
  return body[name] as boolean;
}

export function optionalNumber(body: Body, name: string, opts: { integer?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (!present(body, name)) return undefined;
  const value = body[name];
  if (typeof value !== "number" || !Number.isFinite(value)) throw invalidField(name, `'${name}' must be a number.`);
  if (opts.integer && !Number.isInteger(value)) throw invalidField(name, `'${name}' must be an integer.`);
  if (opts.min !== undefined && value < opts.min) throw invalidField(name, `'${name}' must be at least ${opts.min}; got ${value}.`);
  if (opts.max !== undefined && value > opts.max) throw invalidField(name, `'${name}' must be at most ${opts.max}; got ${value}.`);
  return value;
}

/** `stop`: a string or an array of strings. */
export function optionalStop(body: Body): string[] {
  if (!present(body, "stop")) return [];
  const value = body.stop;
  if (typeof value === "string") return [value];
  if (Array.isArray(value) && value.every((s) => typeof s === "string")) return value as string[];
  throw invalidField("stop", "'stop' must be a string or an array of strings.");
}

/**
 * The fields of a body that SMMF does not read itself, as a JSON object ("" when there are none): they travel
 * to the engine, which passes them to an OpenAI-compatible upstream as sent, or judges them (llama.cpp).
 */
export function extraFields(body: Body, known: ReadonlySet<string>, chars: { add(text: string): void }): string {
  const extra: [string, unknown][] = [];
  for (const name of Object.keys(body)) {
    if (!known.has(name) && body[name] !== undefined) extra.push([name, body[name]]);
  }
  if (extra.length === 0) return "";
  // fromEntries defines own properties (a field named "__proto__" stays a field).
  const json = JSON.stringify(Object.fromEntries(extra));
  chars.add(json);
  return json;
}
