import * as crypto from "node:crypto";
import type { ChatMessage, GenerateStart } from "../gen/smmf/v1/inference_pb.js";

/** A plain prompt is cut into blocks of this many characters (the last one may be shorter). */
export const PROMPT_BLOCK_CHARS = 1024;
/** A chat message longer than this many characters is cut into blocks of this size. */
export const MESSAGE_BLOCK_CHARS = 4096;
/** Keys of one request at most: blocks past these are not hashed (the request is known by its first ones). */
export const MAX_PREFIX_KEYS = 256;

/** Characters of each key: 16 base64url characters, 96 bits of a SHA-1 digest. */
const KEY_CHARS = 16;

/** One-shot hashing (Node >= 20.12: no Hash object per call), else the classic way. */
const sha1: (data: string) => string = crypto.hash
  ? (data) => crypto.hash("sha1", data, "base64url")
  : (data) => crypto.createHash("sha1").update(data).digest("base64url");

/**
 * A request's prefix keys: `keys[i]` stands for blocks 0..i of what the engine renders, in order, so two
 * requests share key i exactly when their first i + 1 blocks are the same.
 */
export interface PrefixKeys {
  readonly keys: string[];
  /**
   * How many of the last keys mark where this request ends (1 or 2; 0 when it has no block beyond block 0):
   * its last block, and for a plain prompt whose last block is partial, its last full block too (the next turn
   * of a prompt conversation, the prompt plus the answer plus more text, extends that block, not the partial
   * one). These are the keys a router remembers: a later request that holds one of them continues this one.
   */
  readonly ends: number;
}

/**
 * The prefix keys of a generation request, a chain of hashes over its leading blocks:
 * - block 0: the model's name and what a chat template renders ahead of the messages (the tools' names,
 *   descriptions and parameters), and whether the input is chat or a plain prompt;
 * - chat: one block per message (role, name, content, tool calls, tool call id); a message whose content is
 *   longer than 4 KiB (characters) takes one block per 4 KiB of it, the last holding the rest;
 * - a plain prompt: blocks of 1 KiB of its text, the last partial block included.
 * Sampling parameters and `continuation` (a failover's text) do not count. Key i is the SHA-1 of key i - 1
 * followed by block i (96 bits kept): collisions are far too rare to matter, and a key only steers routing,
 * never what is generated. Fields are written with their lengths, so that no two different requests make the
 * same blocks. About a microsecond per block, one short string per key.
 */
export function prefixKeysOf(start: GenerateStart): PrefixKeys {
  const keys: string[] = [];
  const input = start.input;
  let block = `${input.case === "prompt" ? "p" : input.case === "chat" ? "c" : "-"}${start.model.length}:${start.model}${start.tools.length};`;
  for (const tool of start.tools) {
    block += `${tool.name.length}:${tool.name}${tool.description.length}:${tool.description}${tool.parametersJson.length}:${tool.parametersJson}`;
  }
  let key = sha1(block).slice(0, KEY_CHARS);
  keys.push(key);
  if (input.case === "prompt") {
    const text = input.value;
    let full = 0;
    for (let at = 0; at < text.length && keys.length < MAX_PREFIX_KEYS; at += PROMPT_BLOCK_CHARS) {
      const end = Math.min(text.length, at + PROMPT_BLOCK_CHARS);
      key = sha1(key + text.slice(at, end)).slice(0, KEY_CHARS);
      keys.push(key);
      if (end - at === PROMPT_BLOCK_CHARS) full = keys.length;
    }
    // The last full block ends the request too when a partial one follows it. An empty prompt ends nowhere:
    // block 0 alone is shared by every request of the model.
    return { keys, ends: keys.length === 1 ? 0 : full > 0 && full === keys.length - 1 ? 2 : 1 };
  }
  if (input.case === "chat") {
    for (const message of input.value.messages) {
      if (keys.length >= MAX_PREFIX_KEYS) break;
      key = addMessage(key, keys, message);
    }
  }
  return { keys, ends: keys.length === 1 ? 0 : 1 };
}

/** Pushes the keys of one message's blocks; returns the last. */
function addMessage(key: string, keys: string[], message: ChatMessage): string {
  const { role, name, toolCallId, content } = message;
  let head = `m${role.length}:${role}${name.length}:${name}${toolCallId.length}:${toolCallId}`;
  // The content goes without its length ahead (a long message's first blocks must not depend on what follows
  // them); its length closes it.
  let at = 0;
  while (content.length - at > MESSAGE_BLOCK_CHARS) {
    key = sha1(key + head + content.slice(at, at + MESSAGE_BLOCK_CHARS)).slice(0, KEY_CHARS);
    keys.push(key);
    head = "";
    at += MESSAGE_BLOCK_CHARS;
    if (keys.length >= MAX_PREFIX_KEYS) return key;
  }
  let tail = `\u0000${content.length};${message.toolCalls.length}`;
  for (const call of message.toolCalls) tail += `${call.id.length}:${call.id}${call.name.length}:${call.name}${call.arguments.length}:${call.arguments}`;
  key = sha1(key + head + (at === 0 ? content : content.slice(at)) + tail).slice(0, KEY_CHARS);
  keys.push(key);
  return key;
}
