import type { GbnfJsonSchema, Llama, LlamaGrammar } from "node-llama-cpp";
import { SmmfError } from "../errors/SmmfError.js";

/*
 * Standard JSON Schema (as OpenAI's structured outputs and function parameters use it) → the subset that
 * node-llama-cpp 3.21 turns into a llama.cpp grammar (`GbnfJsonSchema`), and a cache of the built grammars.
 *
 * How node-llama-cpp's generator behaves (read from dist/utils/gbnfJson, 3.21.1), and what this module does about it:
 * - `required` is ignored: every key of `properties` is always emitted, in declaration order. Optional
 *   properties therefore always appear, which still matches the schema. A key listed in `required` but not in
 *   `properties` would never be emitted, so it is added as a property (typed by `additionalProperties`).
 * - `additionalProperties` defaults to false (JSON Schema's default is true). Objects with declared properties
 *   are emitted with exactly those keys (also when the schema allows more: extra keys are optional, and a
 *   generated extra key could repeat a declared one); objects without declared properties get
 *   `additionalProperties` (absent or true: any JSON values), so `{type: "object"}` means any object.
 * - `oneOf` is a plain alternation (anyOf semantics): the grammar cannot check that exactly one alternative
 *   matches. `anyOf` becomes `oneOf`; a real `oneOf` is accepted when its alternatives are provably disjoint
 *   (different JSON types, different literals, or objects told apart by a property), else refused under strict.
 * - `$ref` only resolves `#/$defs/<name>`; anything else silently becomes "any JSON". Every local JSON pointer
 *   (`#`, `#/definitions/X`, `#/$defs/X`, `#/properties/a`, …) is rewritten to a root `$defs` entry here.
 * - Numbers: the integer rule allows an exponent ("5e-1" is 0.5, not an integer) and up to 16 digits (beyond
 *   Number.MAX_SAFE_INTEGER); exponents have up to 16 digits (1e999… parses as Infinity). `GrammarCache`
 *   rewrites those two rules (integers: at most 15 digits, no exponent; exponents: at most 2 digits), so
 *   integers are always safe integers and numbers are finite (|x| < 1e115). The integer bounds ±2^53-1 that zod
 *   emits for every int are therefore met without being enforced, and accepted as "no constraint".
 *   (Code that hands the converted schema to node-llama-cpp directly, e.g. as LlamaChat functions, does not get
 *   that rewrite.)
 * - Strings: `minLength`/`maxLength` count grammar characters: a code point or an escape sequence (an escaped
 *   surrogate pair counts 2, a validator counts 1). `format` date, time and date-time produce RFC 3339 shapes
 *   (time always with a zone) but do not check the day against the month (2023-02-31 is possible).
 * - Arrays: `items`, `prefixItems` (and draft-07 tuple `items` + `additionalItems`), `minItems`, `maxItems`.
 * - Literals (`const`, `enum`) must be primitives there; object and array literals are spelled out as nested
 *   schemas here.
 */

/** A converted (GbnfJsonSchema) node under construction. */
type Out = Record<string, unknown>;
type Kind = "string" | "number" | "boolean" | "null" | "object" | "array";

const ALL_KINDS: readonly Kind[] = ["string", "number", "boolean", "null", "object", "array"];
const TYPES = new Set(["string", "number", "integer", "boolean", "null", "object", "array"]);

/** Dropped without effect on validation. */
const ANNOTATIONS = new Set([
  "title",
  "description",
  "default",
  "examples",
  "$schema",
  "$id",
  "$comment",
  "readOnly",
  "writeOnly",
  "deprecated",
  "$anchor",
]);
const CONTAINERS = new Set(["$defs", "definitions"]);
const OBJECT_KEYWORDS = [
  "properties",
  "required",
  "additionalProperties",
  "minProperties",
  "maxProperties",
  "patternProperties",
  "propertyNames",
  "dependentRequired",
  "dependentSchemas",
  "dependencies",
  "unevaluatedProperties",
];
const ARRAY_KEYWORDS = ["items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains", "minContains", "maxContains", "unevaluatedItems"];
const STRING_KEYWORDS = ["minLength", "maxLength", "pattern", "format"];
const NUMBER_KEYWORDS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];
const GENERIC_KEYWORDS = ["type", "enum", "const", "anyOf", "oneOf", "allOf", "not", "if", "then", "else", "$ref"];
const KNOWN = new Set([...ANNOTATIONS, ...CONTAINERS, ...OBJECT_KEYWORDS, ...ARRAY_KEYWORDS, ...STRING_KEYWORDS, ...NUMBER_KEYWORDS, ...GENERIC_KEYWORDS]);
/** Known keywords that the grammar never enforces (beyond the special cases handled below). */
const NEVER = new Set(["not", "if", "then", "else", "patternProperties", "dependentRequired", "dependentSchemas", "dependencies", "unevaluatedProperties", "unevaluatedItems", "contains", "minContains", "maxContains", "pattern"]);

/** Formats node-llama-cpp generates, with the shortest and longest string each produces. */
const FORMATS: Record<string, [number, number]> = { date: [10, 10], time: [9, 18], "date-time": [20, 29] };
/** Integer ranges at most this wide become an enum of their values. */
const MAX_ENUMERATED_RANGE = 256;
/** With the rewritten number rule every generated number is below this in magnitude. */
const NUMBER_LIMIT = 1e115;

/** Facts about a converted object schema that the oneOf disjointness check needs. */
interface ObjectFacts {
  /** The converted schema of every declared property (also those not emitted). */
  declared: Map<string, Out>;
  required: Set<string>;
  /** The original schema had `additionalProperties: false`. */
  closed: boolean;
}

interface Context {
  root: unknown;
  base: string;
  strict: boolean;
  /** JSON pointer → name in the output's root $defs. */
  refs: Map<string, string>;
  /** Parameter path of each def, for errors. */
  defPaths: Map<string, string>;
  defs: Map<string, Out>;
  /** Converted nodes whose original schema accepts every JSON type (type was inferred from keywords). */
  inferred: WeakSet<Out>;
  objects: WeakMap<Out, ObjectFacts>;
}

/**
 * Converts a standard JSON Schema into node-llama-cpp's `GbnfJsonSchema` subset, so that output generated under
 * the resulting grammar validates against the original schema.
 *
 * - Annotations (title, description, default, examples, $schema, $id, $comment, readOnly, writeOnly, deprecated,
 *   $anchor) are dropped. `anyOf` becomes `oneOf`; `definitions`/`#/definitions/X` (and any local JSON pointer)
 *   become root `$defs`; `{type: "string", enum}` becomes an enum; integer bounds at or beyond
 *   ±Number.MAX_SAFE_INTEGER count as no constraint (see the module comment); an integer range of at most 256
 *   values becomes an enum.
 * - A keyword the grammar cannot enforce: with `strict`, throws `invalid_argument` whose param is the keyword's
 *   path under `param` (e.g. "response_format.json_schema.schema.properties.age.minimum"); without, the keyword
 *   is dropped (output then matches the schema without that constraint).
 * - A malformed or unsatisfiable schema is `invalid_argument` in both modes.
 */
export function toGrammarSchema(schema: unknown, param: string, strict: boolean): GbnfJsonSchema {
  const ctx: Context = {
    root: schema,
    base: param,
    strict,
    refs: new Map(),
    defPaths: new Map(),
    defs: new Map(),
    inferred: new WeakSet(),
    objects: new WeakMap(),
  };
  if (!isPlainObject(schema) && typeof schema !== "boolean") throw malformed(param, "must be a JSON Schema object");
  if (schema === false) throw unsatisfiable(param, "the schema `false` matches nothing");
  let out = convert(ctx, schema, param);
  checkTermination(ctx, out);
  if (ctx.defs.size > 0) {
    if (!(out.type === "object" || out.type === "array" || "oneOf" in out || "$ref" in out)) out = { oneOf: [out] };
    out = { ...out, $defs: Object.fromEntries(ctx.defs) };
  }
  return out as unknown as GbnfJsonSchema;
}

// ---------------------------------------------------------------------------------------------------------------
// Conversion

function convert(ctx: Context, schema: unknown, path: string): Out {
  if (schema === true) return anyValue();
  if (schema === false) throw unsatisfiable(path, "the schema `false` matches nothing here");
  if (!isPlainObject(schema)) throw malformed(path, "must be a JSON Schema (an object or a boolean)");

  // The keywords still in effect: annotations dropped, unknown and never-enforceable keywords refused or dropped.
  const s: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (ANNOTATIONS.has(key)) continue;
    if (CONTAINERS.has(key)) {
      if (!isPlainObject(value)) throw malformed(`${path}.${key}`, "must be an object of schemas");
      continue;
    }
    if (!KNOWN.has(key)) {
      unsupported(ctx, path, key, "an unknown keyword");
      continue;
    }
    if (NEVER.has(key)) {
      unsupported(ctx, path, key);
      continue;
    }
    s[key] = value;
  }

  if ("allOf" in s) {
    const single = trivialAllOf(ctx, s, path);
    if (single !== undefined) return convert(ctx, single.schema, single.path);
    delete s.allOf;
  }
  if ("$ref" in s) {
    const ref = convertRef(ctx, s, path);
    if (ref) return ref;
    delete s.$ref;
  }
  if ("anyOf" in s || "oneOf" in s) return convertAlternatives(ctx, s, path);
  if ("enum" in s || "const" in s) return convertLiterals(ctx, s, path);
  return convertTyped(ctx, s, path);
}

/** `allOf` with a single non-trivial member and no other constraints (pydantic's `allOf: [{$ref}]`); undefined: drop it. */
function trivialAllOf(ctx: Context, s: Record<string, unknown>, path: string): { schema: unknown; path: string } | undefined {
  const all = s.allOf;
  if (!Array.isArray(all) || all.length === 0) throw malformed(`${path}.allOf`, "must be a non-empty array of schemas");
  const members = all
    .map((schema, i) => ({ schema, path: `${path}.allOf[${i}]` }))
    .filter((m) => !(m.schema === true || (isPlainObject(m.schema) && Object.keys(m.schema).every((k) => ANNOTATIONS.has(k)))));
  if (members.length === 0) return undefined; // nothing but annotations: no constraint
  if (members.length === 1 && Object.keys(s).length === 1) return members[0];
  unsupported(ctx, path, "allOf");
  return undefined;
}

function convertRef(ctx: Context, s: Record<string, unknown>, path: string): Out | undefined {
  const ref = s.$ref;
  if (typeof ref !== "string") throw malformed(`${path}.$ref`, "must be a string");
  if (!(ref === "#" || ref.startsWith("#/"))) {
    unsupported(ctx, path, "$ref", "only local references such as #/$defs/Name or #/definitions/Name are supported");
    return undefined;
  }
  for (const key of Object.keys(s)) if (key !== "$ref") unsupported(ctx, path, key, "beside '$ref'");

  const segments = ref === "#" ? [] : ref.slice(2).split("/").map(decodePointerSegment);
  let name = ctx.refs.get(ref);
  if (name === undefined) {
    let target: unknown = ctx.root;
    let targetPath = ctx.base;
    for (const segment of segments) {
      if (Array.isArray(target) && /^(0|[1-9]\d*)$/.test(segment)) {
        target = target[Number(segment)];
        targetPath = `${targetPath}[${segment}]`;
      } else if (isPlainObject(target) && Object.hasOwn(target, segment)) {
        target = target[segment];
        targetPath = at(targetPath, segment);
      } else throw malformed(`${path}.$ref`, `'${ref}' does not resolve to a schema in this document`);
    }
    name = defName(ctx, segments);
    ctx.refs.set(ref, name);
    ctx.defPaths.set(name, targetPath);
    ctx.defs.set(name, {}); // placeholder while converting (recursive references)
    ctx.defs.set(name, convert(ctx, target, targetPath));
  }
  return { $ref: `#/$defs/${name}` };
}

function decodePointerSegment(segment: string): string {
  let decoded = segment;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    // keep it as written
  }
  return decoded.replaceAll("~1", "/").replaceAll("~0", "~");
}

function defName(ctx: Context, segments: string[]): string {
  const wanted =
    segments.length === 0 ? "root" : segments.length === 2 && (segments[0] === "$defs" || segments[0] === "definitions") ? segments[1] : segments.join("/");
  let name = wanted;
  for (let i = 2; ctx.defs.has(name); i++) name = `${wanted}_${i}`;
  return name;
}

function convertAlternatives(ctx: Context, s: Record<string, unknown>, path: string): Out {
  let keyword: "anyOf" | "oneOf" = "anyOf" in s ? "anyOf" : "oneOf";
  if ("anyOf" in s && "oneOf" in s) {
    unsupported(ctx, path, "oneOf", "beside 'anyOf'");
    keyword = "anyOf";
  }
  for (const key of Object.keys(s)) if (key !== keyword && key !== "anyOf" && key !== "oneOf") unsupported(ctx, path, key, `beside '${keyword}'`);

  const list = s[keyword];
  if (!Array.isArray(list) || list.length === 0) throw malformed(`${path}.${keyword}`, "must be a non-empty array of schemas");
  const alternatives: Out[] = [];
  list.forEach((alt, i) => {
    if (alt !== false) alternatives.push(convert(ctx, alt, `${path}.${keyword}[${i}]`));
  });
  if (alternatives.length === 0) throw unsatisfiable(`${path}.${keyword}`, "every alternative is `false`");
  if (keyword === "oneOf" && ctx.strict) {
    for (let i = 0; i < alternatives.length; i++)
      for (let j = i + 1; j < alternatives.length; j++)
        if (!(excludes(ctx, alternatives[i], alternatives[j], 0) && excludes(ctx, alternatives[j], alternatives[i], 0)))
          unsupported(ctx, path, "oneOf", `alternatives ${i} and ${j} may both match and the grammar cannot check that exactly one does; use 'anyOf'`);
  }
  return alternatives.length === 1 ? alternatives[0] : { oneOf: alternatives };
}

// ---------------------------------------------------------------------------------------------------------------
// Literals: enum and const

function convertLiterals(ctx: Context, s: Record<string, unknown>, path: string): Out {
  let values: unknown[];
  if ("enum" in s) {
    if (!Array.isArray(s.enum) || s.enum.length === 0) throw malformed(`${path}.enum`, "must be a non-empty array");
    values = s.enum;
    if ("const" in s) values = values.filter((v) => jsonEqual(v, s.const));
  } else values = [s.const];
  values.forEach((v, i) => {
    if (!isJsonValue(v)) throw malformed("enum" in s ? `${path}.enum[${i}]` : `${path}.const`, "must be a JSON value");
  });

  const types = "type" in s ? readTypes(s.type, path) : undefined;
  // Type-specific keywords constrain only values of their type: check them on each literal.
  const composite = values.some((v) => typeof v === "object" && v !== null);
  if (composite)
    for (const key of [...OBJECT_KEYWORDS, ...ARRAY_KEYWORDS]) if (key in s) unsupported(ctx, path, key, "beside 'enum'/'const' with object or array values");
  if ("format" in s && values.some((v) => typeof v === "string")) unsupported(ctx, path, "format", "beside 'enum'/'const'");

  const kept = values.filter((v) => (types === undefined || types.some((t) => typeMatches(v, t))) && literalMatches(v, s, path));
  if (kept.length === 0) throw unsatisfiable(path, "no value of 'enum'/'const' satisfies the schema's other keywords");

  const primitives = dedupe(kept.filter((v) => typeof v !== "object" || v === null));
  const parts: Out[] = kept.filter((v) => typeof v === "object" && v !== null).map((v) => literalSchema(v));
  if (primitives.length > 0) {
    for (const v of primitives) if (typeof v === "string") checkGeneratable(v, path, "a literal string");
    parts.unshift(primitives.length === 1 ? { const: primitives[0] } : { enum: primitives });
  }
  return parts.length === 1 ? parts[0] : { oneOf: parts };
}

/** A schema that produces exactly this JSON value. */
function literalSchema(value: unknown): Out {
  if (Array.isArray(value))
    return value.length === 0 ? { type: "array", maxItems: 0 } : { type: "array", prefixItems: value.map(literalSchema), minItems: value.length, maxItems: value.length };
  if (isPlainObject(value)) {
    return { type: "object", properties: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, literalSchema(v)])) };
  }
  return { const: value };
}

/** String and number keywords checked on a literal value. */
function literalMatches(v: unknown, s: Record<string, unknown>, path: string): boolean {
  if (typeof v === "string") {
    const length = [...v].length;
    const min = readCount(s, "minLength", path);
    const max = readCount(s, "maxLength", path);
    return (min === undefined || length >= min) && (max === undefined || length <= max);
  }
  if (typeof v === "number") {
    const { lo, hi, loExclusive, hiExclusive, multipleOf } = readBounds(s, path);
    if (lo !== undefined && (loExclusive ? v <= lo : v < lo)) return false;
    if (hi !== undefined && (hiExclusive ? v >= hi : v > hi)) return false;
    return multipleOf === undefined || Number.isInteger(v / multipleOf);
  }
  return true;
}

/** node-llama-cpp escapes only \\, ", \t, \r and \n in literal strings: other control characters would break the JSON. */
function checkGeneratable(value: string, path: string, what: string): void {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f]/.test(value))
    throw new SmmfError("invalid_argument", `${path}: ${what} with control characters cannot be generated on this model (llama.cpp grammar)`, { param: path });
}

// ---------------------------------------------------------------------------------------------------------------
// Typed schemas

function convertTyped(ctx: Context, s: Record<string, unknown>, path: string): Out {
  let types: string[];
  let inferred = false;
  if ("type" in s) types = readTypes(s.type, path);
  else {
    types = [];
    if (OBJECT_KEYWORDS.some((k) => k in s)) types.push("object");
    if (ARRAY_KEYWORDS.some((k) => k in s)) types.push("array");
    if (STRING_KEYWORDS.some((k) => k in s)) types.push("string");
    if (NUMBER_KEYWORDS.some((k) => k in s)) types.push("number");
    if (types.length === 0) return anyValue();
    inferred = true;
  }
  if (types.includes("number")) types = types.filter((t) => t !== "integer");

  const basic: string[] = [];
  const parts: Out[] = [];
  for (const type of types) {
    const part =
      type === "object"
        ? convertObject(ctx, s, path)
        : type === "array"
          ? convertArray(ctx, s, path)
          : type === "string"
            ? convertString(ctx, s, path)
            : type === "number" || type === "integer"
              ? convertNumber(ctx, s, path, type)
              : { type };
    if (Object.keys(part).length === 1 && typeof part.type === "string" && part.type !== "object" && part.type !== "array") basic.push(part.type);
    else parts.push(part);
  }
  if (basic.length > 0) parts.unshift({ type: basic.length === 1 ? basic[0] : basic });
  const out = parts.length === 1 ? parts[0] : { oneOf: parts };
  if (inferred) ctx.inferred.add(out);
  return out;
}

function readTypes(type: unknown, path: string): string[] {
  const list = Array.isArray(type) ? type : [type];
  if (list.length === 0) throw malformed(`${path}.type`, "must not be an empty array");
  for (const t of list)
    if (typeof t !== "string" || !TYPES.has(t))
      throw malformed(`${path}.type`, `must be one of string, number, integer, boolean, null, object, array (or an array of them), got ${JSON.stringify(t)}`);
  return [...new Set(list as string[])];
}

function convertString(ctx: Context, s: Record<string, unknown>, path: string): Out {
  const min = readCount(s, "minLength", path);
  const max = readCount(s, "maxLength", path);
  if (min !== undefined && max !== undefined && max < min) throw unsatisfiable(path, "'maxLength' is below 'minLength'");
  if ("format" in s) {
    const format = s.format;
    if (typeof format !== "string") throw malformed(`${path}.format`, "must be a string");
    const lengths = FORMATS[format];
    if (lengths === undefined) unsupported(ctx, path, "format", `format '${format}'; only date, time and date-time are`);
    else {
      if (min !== undefined && min > lengths[0]) unsupported(ctx, path, "minLength", `together with 'format'`);
      if (max !== undefined && max < lengths[1]) unsupported(ctx, path, "maxLength", `together with 'format'`);
      return { type: "string", format };
    }
  }
  const out: Out = { type: "string" };
  if (min !== undefined && min > 0) out.minLength = min;
  if (max !== undefined) out.maxLength = max;
  return out;
}

function convertNumber(ctx: Context, s: Record<string, unknown>, path: string, type: "number" | "integer"): Out {
  const { lo, hi, loExclusive, hiExclusive, loKeyword, hiKeyword, multipleOf } = readBounds(s, path);
  if (type === "number") {
    if (lo !== undefined && lo > -NUMBER_LIMIT) unsupported(ctx, path, loKeyword!);
    if (hi !== undefined && hi < NUMBER_LIMIT) unsupported(ctx, path, hiKeyword!);
    if (multipleOf !== undefined) unsupported(ctx, path, "multipleOf");
    return { type: "number" };
  }
  // Integers: the rewritten grammar emits at most 15 digits, so bounds at or beyond ±MAX_SAFE_INTEGER hold.
  let from = lo === undefined ? -Infinity : loExclusive ? Math.floor(lo) + 1 : Math.ceil(lo);
  let to = hi === undefined ? Infinity : hiExclusive ? Math.ceil(hi) - 1 : Math.floor(hi);
  if (from <= -Number.MAX_SAFE_INTEGER) from = -Infinity;
  if (to >= Number.MAX_SAFE_INTEGER) to = Infinity;
  if (from > to) throw unsatisfiable(path, "no integer lies between the bounds");
  const everyInteger = multipleOf === undefined || Number.isInteger(1 / multipleOf);
  if (Number.isFinite(from) && Number.isFinite(to) && to - from < MAX_ENUMERATED_RANGE) {
    const values: number[] = [];
    for (let v = from; v <= to; v++) if (everyInteger || Number.isInteger(v / multipleOf!)) values.push(v);
    if (values.length === 0) throw unsatisfiable(path, "no integer between the bounds is a multiple of 'multipleOf'");
    return values.length === 1 ? { const: values[0] } : { enum: values };
  }
  if (!everyInteger) unsupported(ctx, path, "multipleOf");
  if (Number.isFinite(from)) unsupported(ctx, path, loKeyword!);
  if (Number.isFinite(to)) unsupported(ctx, path, hiKeyword!);
  return { type: "integer" };
}

interface Bounds {
  lo?: number;
  hi?: number;
  loExclusive: boolean;
  hiExclusive: boolean;
  loKeyword?: string;
  hiKeyword?: string;
  multipleOf?: number;
}

/** minimum/maximum/exclusive* (draft-06+ numbers, or draft-04 booleans) and multipleOf, the tightest bound kept. */
function readBounds(s: Record<string, unknown>, path: string): Bounds {
  const num = (key: string): number | undefined => {
    const v = s[key];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v)) throw malformed(`${path}.${key}`, "must be a number");
    return v;
  };
  const b: Bounds = { loExclusive: false, hiExclusive: false };
  const minimum = num("minimum");
  const maximum = num("maximum");
  if (minimum !== undefined) Object.assign(b, { lo: minimum, loKeyword: "minimum", loExclusive: s.exclusiveMinimum === true });
  if (maximum !== undefined) Object.assign(b, { hi: maximum, hiKeyword: "maximum", hiExclusive: s.exclusiveMaximum === true });
  for (const [key, side] of [
    ["exclusiveMinimum", "lo"],
    ["exclusiveMaximum", "hi"],
  ] as const) {
    const v = s[key];
    if (v === undefined || typeof v === "boolean") continue;
    const n = num(key)!;
    const current = b[side];
    if (current === undefined || (side === "lo" ? n >= current : n <= current))
      Object.assign(b, side === "lo" ? { lo: n, loKeyword: key, loExclusive: true } : { hi: n, hiKeyword: key, hiExclusive: true });
  }
  const multipleOf = num("multipleOf");
  if (multipleOf !== undefined && multipleOf <= 0) throw malformed(`${path}.multipleOf`, "must be greater than 0");
  b.multipleOf = multipleOf;
  return b;
}

function convertObject(ctx: Context, s: Record<string, unknown>, path: string): Out {
  const properties = s.properties ?? {};
  if (!isPlainObject(properties)) throw malformed(`${path}.properties`, "must be an object mapping names to schemas");
  const requiredList = s.required ?? [];
  if (!Array.isArray(requiredList) || requiredList.some((r) => typeof r !== "string")) throw malformed(`${path}.required`, "must be an array of strings");
  const required = new Set(requiredList as string[]);
  const additional = s.additionalProperties;
  if (additional !== undefined && typeof additional !== "boolean" && !isPlainObject(additional))
    throw malformed(`${path}.additionalProperties`, "must be a boolean or a schema");
  const minProperties = readCount(s, "minProperties", path);
  const maxProperties = readCount(s, "maxProperties", path);
  if ("propertyNames" in s && !trivialPropertyNames(s.propertyNames)) unsupported(ctx, path, "propertyNames");

  const declared = new Map<string, Out>();
  const emitted: [string, Out][] = [];
  for (const [key, sub] of Object.entries(properties)) {
    const at_ = at(`${path}.properties`, key);
    checkGeneratable(key, at_, "a property name");
    if (sub === false) {
      if (required.has(key)) throw unsatisfiable(at_, "a required property whose schema is `false`");
      continue;
    }
    const out = convert(ctx, sub, at_);
    declared.set(key, out);
    emitted.push([key, out]);
  }
  for (const key of required) {
    if (declared.has(key) || Object.hasOwn(properties, key)) continue;
    if (additional === false) throw unsatisfiable(`${path}.required`, `required property '${key}' is not allowed by 'additionalProperties: false'`);
    const out = isPlainObject(additional) ? convert(ctx, additional, `${path}.additionalProperties`) : anyValue();
    declared.set(key, out);
    emitted.push([key, out]);
  }
  if (maxProperties !== undefined && emitted.length > maxProperties) {
    // Every emitted key counts: leave out optional properties (from the last) until the bound holds.
    const requiredCount = emitted.filter(([k]) => required.has(k)).length;
    if (requiredCount > maxProperties) throw unsatisfiable(`${path}.maxProperties`, "more properties are required than 'maxProperties' allows");
    for (let i = emitted.length - 1; i >= 0 && emitted.length > maxProperties; i--) if (!required.has(emitted[i][0])) emitted.splice(i, 1);
  }

  let out: Out;
  if (emitted.length > 0) {
    if (minProperties !== undefined && minProperties > emitted.length) unsupported(ctx, path, "minProperties", "more than the declared properties");
    out = { type: "object", properties: Object.fromEntries(emitted) };
  } else if (additional === false) {
    if (minProperties !== undefined && minProperties > 0) throw unsatisfiable(`${path}.minProperties`, "no property is allowed");
    out = { type: "object" };
  } else {
    out = { type: "object", additionalProperties: isPlainObject(additional) ? convert(ctx, additional, `${path}.additionalProperties`) : true };
    // Generated keys may repeat (the later one wins), so only a minimum of one property is certain.
    if (minProperties !== undefined && minProperties > 1) unsupported(ctx, path, "minProperties", "above 1 for objects without declared properties");
    else if (minProperties === 1) out.minProperties = 1;
    if (maxProperties !== undefined) out.maxProperties = maxProperties;
  }
  ctx.objects.set(out, { declared, required, closed: additional === false });
  return out;
}

function trivialPropertyNames(schema: unknown): boolean {
  if (schema === true) return true;
  if (!isPlainObject(schema)) return false;
  return Object.entries(schema).every(([k, v]) => ANNOTATIONS.has(k) || (k === "type" && v === "string"));
}

function convertArray(ctx: Context, s: Record<string, unknown>, path: string): Out {
  let prefix: unknown[] = [];
  let prefixKey = "prefixItems";
  let rest: unknown = true;
  let restPath = `${path}.items`;
  if (Array.isArray(s.items)) {
    if ("prefixItems" in s) throw malformed(`${path}.items`, "an array of schemas cannot be combined with 'prefixItems'");
    prefix = s.items;
    prefixKey = "items";
    if ("additionalItems" in s) {
      rest = s.additionalItems;
      restPath = `${path}.additionalItems`;
    }
  } else {
    if ("prefixItems" in s) {
      if (!Array.isArray(s.prefixItems)) throw malformed(`${path}.prefixItems`, "must be an array of schemas");
      prefix = s.prefixItems;
    }
    if ("items" in s) rest = s.items;
  }
  if (rest !== undefined && typeof rest !== "boolean" && !isPlainObject(rest)) throw malformed(restPath, "must be a schema");
  const minItems = readCount(s, "minItems", path) ?? 0;
  let maxLength = readCount(s, "maxItems", path) ?? Infinity;
  if (rest === false) maxLength = Math.min(maxLength, prefix.length);
  const firstFalse = prefix.indexOf(false);
  if (firstFalse >= 0) maxLength = Math.min(maxLength, firstFalse);
  if (minItems > maxLength) throw unsatisfiable(path, "'minItems' exceeds the number of items the schema allows");
  if ("uniqueItems" in s) {
    if (typeof s.uniqueItems !== "boolean") throw malformed(`${path}.uniqueItems`, "must be a boolean");
    if (s.uniqueItems && maxLength > 1) unsupported(ctx, path, "uniqueItems");
  }

  const out: Out = { type: "array" };
  const kept = prefix.slice(0, Math.min(prefix.length, maxLength));
  if (kept.length > 0) out.prefixItems = kept.map((item, i) => convert(ctx, item, `${path}.${prefixKey}[${i}]`));
  if (rest !== true && rest !== false && maxLength > kept.length) out.items = convert(ctx, rest, restPath);
  if (minItems > 0) out.minItems = minItems;
  if (Number.isFinite(maxLength)) out.maxItems = maxLength;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// oneOf disjointness: does every value the grammar emits for `a` fail the original schema behind `b`?

function excludes(ctx: Context, a: Out, b: Out, depth: number): boolean {
  if (depth > 16) return false;
  a = deref(ctx, a);
  b = deref(ctx, b);
  if (Array.isArray(a.oneOf)) return (a.oneOf as Out[]).every((alt) => excludes(ctx, alt, b, depth + 1));
  // b's type was inferred from its keywords: the original accepts every value of the other types.
  if (ctx.inferred.has(b)) {
    const families = kinds(ctx, b, 0);
    if (!kinds(ctx, a, 0).every((k) => families.includes(k))) return false;
  }
  if (Array.isArray(b.oneOf)) return (b.oneOf as Out[]).every((alt) => excludes(ctx, a, alt, depth + 1));
  const kindsB = kinds(ctx, b, 0);
  if (!kinds(ctx, a, 0).some((k) => kindsB.includes(k))) return true;
  const la = literals(a);
  const lb = literals(b);
  if (la && lb) return !la.some((x) => lb.some((y) => jsonEqual(x, y)));
  const fa = ctx.objects.get(a);
  const fb = ctx.objects.get(b);
  if (fa && fb) {
    const emittedA = Object.entries((a.properties ?? {}) as Record<string, Out>);
    for (const [key, value] of emittedA) {
      const other = fb.declared.get(key);
      if (other ? excludes(ctx, value, other, depth + 1) : fb.closed) return true;
    }
    if (!a.additionalProperties) for (const key of fb.required) if (!emittedA.some(([k]) => k === key)) return true;
  }
  return false;
}

function deref(ctx: Context, s: Out): Out {
  for (let i = 0; i < 16 && typeof s.$ref === "string"; i++) s = ctx.defs.get(s.$ref.slice("#/$defs/".length)) ?? {};
  return s;
}

function kinds(ctx: Context, s: Out, depth: number): readonly Kind[] {
  s = deref(ctx, s);
  if (depth > 16 || "$ref" in s) return ALL_KINDS;
  if (Array.isArray(s.oneOf)) return [...new Set((s.oneOf as Out[]).flatMap((alt) => kinds(ctx, alt, depth + 1)))];
  const lits = literals(s);
  if (lits) return [...new Set(lits.map(kindOf))];
  const types = Array.isArray(s.type) ? (s.type as string[]) : typeof s.type === "string" ? [s.type] : [];
  // No type: a placeholder of a def still being converted; assume anything.
  if (types.length === 0) return ALL_KINDS;
  return [...new Set(types.map((t) => (t === "integer" ? "number" : (t as Kind))))];
}

function literals(s: Out): unknown[] | undefined {
  if ("const" in s) return [s.const];
  if (Array.isArray(s.enum)) return s.enum;
  return undefined;
}

function kindOf(v: unknown): Kind {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v as Kind;
}

// ---------------------------------------------------------------------------------------------------------------
// Termination: refuse recursion the grammar can never finish, and $ref cycles that consume no text.

function checkTermination(ctx: Context, root: Out): void {
  // Left recursion: a def that reaches itself through $ref and alternatives alone.
  const heads = (s: Out): string[] =>
    typeof s.$ref === "string" ? [s.$ref.slice("#/$defs/".length)] : Array.isArray(s.oneOf) ? (s.oneOf as Out[]).flatMap(heads) : [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string): void => {
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") throw unsatisfiable(ctx.defPaths.get(name) ?? ctx.base, "a circular $ref that never passes through an object or array");
    state.set(name, "visiting");
    for (const next of heads(ctx.defs.get(name) ?? {})) visit(next);
    state.set(name, "done");
  };
  for (const name of ctx.defs.keys()) visit(name);

  // Every property is always emitted, so a recursion with no way out (no empty array, no other alternative)
  // never ends. Least fixpoint of "can produce a finite value".
  const finite = new Map<string, boolean>();
  const produces = (s: Out): boolean => {
    if (typeof s.$ref === "string") return finite.get(s.$ref.slice("#/$defs/".length)) ?? false;
    if (Array.isArray(s.oneOf)) return (s.oneOf as Out[]).some(produces);
    if (s.type === "object") return Object.values((s.properties ?? {}) as Record<string, Out>).every(produces);
    if (s.type === "array") {
      const prefix = (s.prefixItems ?? []) as Out[];
      const min = (s.minItems as number | undefined) ?? 0;
      return prefix.every(produces) && (min <= prefix.length || s.items === undefined || produces(s.items as Out));
    }
    return true;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (const [name, def] of ctx.defs)
      if (!finite.get(name) && produces(def)) {
        finite.set(name, true);
        changed = true;
      }
  }
  const stuck = [...ctx.defs.keys()].find((name) => !finite.get(name));
  if (stuck !== undefined || !produces(root))
    throw unsatisfiable(
      stuck === undefined ? ctx.base : (ctx.defPaths.get(stuck) ?? ctx.base),
      "a recursive schema with no finite value (this grammar emits every property, so make the recursive property nullable or an array)",
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/** Any JSON value, spelled in node-llama-cpp's subset (an array without `items` takes any values). */
function anyValue(): Out {
  return { oneOf: [{ type: ["string", "number", "boolean", "null"] }, { type: "array" }, { type: "object", additionalProperties: true }] };
}

function unsupported(ctx: Context, path: string, keyword: string, detail?: string): void {
  if (!ctx.strict) return;
  throw new SmmfError(
    "invalid_argument",
    `${path}: '${keyword}'${detail ? ` (${detail})` : ""} cannot be enforced on this model (llama.cpp grammar); remove it or set strict: false`,
    { param: `${path}.${keyword}` },
  );
}

function malformed(param: string, problem: string): SmmfError {
  return new SmmfError("invalid_argument", `${param}: ${problem}`, { param });
}

function unsatisfiable(param: string, problem: string): SmmfError {
  return new SmmfError("invalid_argument", `${param}: the schema cannot be satisfied: ${problem}`, { param });
}

function readCount(s: Record<string, unknown>, key: string, path: string): number | undefined {
  const v = s[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw malformed(`${path}.${key}`, "must be a non-negative integer");
  return v;
}

/** Appends a property name to a parameter path: `.name`, or `["odd name"]`. */
function at(path: string, key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isJsonValue(v: unknown): boolean {
  if (v === null || typeof v === "string" || typeof v === "boolean") return true;
  if (typeof v === "number") return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(isJsonValue);
  return isPlainObject(v) && Object.values(v).every(isJsonValue);
}

function typeMatches(v: unknown, type: string): boolean {
  switch (type) {
    case "integer":
      return typeof v === "number" && Number.isInteger(v);
    case "number":
      return typeof v === "number";
    case "object":
      return isPlainObject(v);
    case "array":
      return Array.isArray(v);
    case "null":
      return v === null;
    default:
      return typeof v === type;
  }
}

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

function dedupe(values: unknown[]): unknown[] {
  return values.filter((v, i) => values.findIndex((w) => jsonEqual(v, w)) === i);
}

// ---------------------------------------------------------------------------------------------------------------
// Grammar cache

/** node-llama-cpp 3.21's number rules, and the bounded versions GrammarCache builds instead (see the module comment). */
const NUMBER_RULE_REWRITES: [string, string][] = [
  [
    'integer-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15}) ([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?',
    'integer-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,14})',
  ],
  [
    'fractional-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?',
    'fractional-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? ("0" | [1-9] [0-9]?))?',
  ],
];

function rewriteNumberRules(grammar: string): string {
  const lines = grammar.split("\n");
  for (const [from, to] of NUMBER_RULE_REWRITES) {
    const i = lines.indexOf(from);
    if (i >= 0) lines[i] = to;
  }
  return lines.join("\n");
}

/**
 * Built llama.cpp grammars for converted schemas, least recently used dropped beyond `size`. Concurrent requests
 * for the same schema share one build; a failed build is not kept.
 */
export class GrammarCache {
  readonly #llama: Llama;
  readonly #size: number;
  readonly #entries = new Map<string, Promise<LlamaGrammar>>();
  #json: Promise<LlamaGrammar> | undefined;

  constructor(llama: Llama, size = 64) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`GrammarCache size must be a positive integer, got ${size}`);
    this.#llama = llama;
    this.#size = size;
  }

  /** The grammar for a schema from `toGrammarSchema` (integers bounded to 15 digits, exponents to 2 digits). */
  forSchema(schema: GbnfJsonSchema): Promise<LlamaGrammar> {
    const key = JSON.stringify(schema);
    const cached = this.#entries.get(key);
    if (cached) {
      this.#entries.delete(key);
      this.#entries.set(key, cached);
      return cached;
    }
    const built = this.#build(schema);
    this.#entries.set(key, built);
    built.catch(() => {
      if (this.#entries.get(key) === built) this.#entries.delete(key);
    });
    while (this.#entries.size > this.#size) this.#entries.delete(this.#entries.keys().next().value as string);
    return built;
  }

  /** Any JSON object at the top level (node-llama-cpp's json.gbnf: `root ::= object`), for `json_object` mode. */
  json(): Promise<LlamaGrammar> {
    if (!this.#json) {
      const built = this.#llama.getGrammarFor("json");
      this.#json = built;
      built.catch(() => {
        if (this.#json === built) this.#json = undefined;
      });
    }
    return this.#json;
  }

  async #build(schema: GbnfJsonSchema): Promise<LlamaGrammar> {
    // The generic signature wants a literal schema type; any GbnfJsonSchema is accepted at run time.
    const create = this.#llama.createGrammarForJsonSchema.bind(this.#llama) as (schema: GbnfJsonSchema) => Promise<LlamaGrammar>;
    const base = await create(schema);
    const grammar = rewriteNumberRules(base.grammar);
    if (grammar === base.grammar) return base;
    return this.#llama.createGrammar({ grammar, stopGenerationTriggers: base.stopGenerationTriggers, trimWhitespaceSuffix: base.trimWhitespaceSuffix });
  }
}
