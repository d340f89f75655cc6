import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Secrets look like `smmf-k1a2b3c4d5e6f-<43 base64url characters>`: a recognizable prefix, the key's id, 256 random bits. */
const SECRET = /^smmf-(k[0-9a-f]{12})-[A-Za-z0-9_-]{43}$/;

/** A new key id: "k" and 12 hex digits. */
export function newKeyId(): string {
  return `k${randomBytes(6).toString("hex")}`;
}

/** A new secret for the key `id` (shown once, stored nowhere: only its SHA-256 is kept). */
export function newSecret(id: string): string {
  return `smmf-${id}-${randomBytes(32).toString("base64url")}`;
}

/** The key id a secret names, or undefined when it is not shaped like an SMMF secret. */
export function keyIdOf(secret: string): string | undefined {
  return SECRET.exec(secret)?.[1];
}

export function sha256Hex(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** Whether `secret` hashes to `expectedHex`, compared in constant time. */
export function secretMatches(secret: string, expectedHex: string): boolean {
  const actual = createHash("sha256").update(secret).digest();
  const expected = Buffer.from(expectedHex, "hex");
  return expected.length === actual.length && timingSafeEqual(actual, expected);
}
