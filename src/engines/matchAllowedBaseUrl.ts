import { SmmfError } from "../errors/SmmfError.js";

/** Encoded dots, slashes and backslashes: an upstream might decode them into a path outside the prefix. */
const ENCODED_SEPARATOR = /%2e|%2f|%5c/i;

function hostMatches(host: string, pattern: string): boolean {
  if (!pattern.startsWith("*.")) return host === pattern;
  const suffix = pattern.slice(1);
  const label = host.slice(0, -suffix.length);
  // `*` stands for exactly one label, of a name (not of an IP address).
  return host.endsWith(suffix) && label.length > 0 && !label.includes(".") && !host.startsWith("[");
}

/**
 * Checks an allowed base URL of an upstream credential: http(s), no credentials, query or fragment, and a
 * `*.` wildcard only as the leftmost label of a host of two labels or more. Throws invalid_argument saying why.
 */
export function checkAllowedBaseUrl(allowed: string): void {
  const wrong = (why: string) => new SmmfError("invalid_argument", `allowed base URL '${allowed.slice(0, 200)}' ${why}`, { param: "allowedBaseUrls" });
  let url: URL;
  try {
    url = new URL(allowed);
  } catch {
    throw wrong("is not a URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw wrong("must be http:// or https://");
  if (url.username || url.password) throw wrong("must not carry credentials");
  if (url.search || url.hash || allowed.includes("?") || allowed.includes("#")) throw wrong("must not have a query or a fragment");
  const host = url.hostname;
  const rest = host.startsWith("*.") ? host.slice(2) : host;
  if (rest.includes("*")) throw wrong("may have '*.' only as the leftmost label of its host");
  if (host.startsWith("*.") && !rest.includes(".")) throw wrong("has a wildcard over a top-level domain");
  if (ENCODED_SEPARATOR.test(url.pathname)) throw wrong("must not have encoded '.', '/' or '\\' in its path");
}

/**
 * Whether `baseUrl` is within `allowed`: the same scheme and port, the same host (or, for `*.example.com`,
 * one label more than example.com), and a path that is the allowed path or lies under it at a `/` boundary
 * (`/v1` allows `/v1` and `/v1/x`, not `/v10`). URLs are compared after parsing (`..` resolved, default
 * ports and case normalized); a base URL with credentials or encoded separators in its path never matches.
 */
export function matchAllowedBaseUrl(baseUrl: string, allowed: string): boolean {
  let url: URL;
  let pattern: URL;
  try {
    checkAllowedBaseUrl(allowed);
    url = new URL(baseUrl);
    pattern = new URL(allowed);
  } catch {
    return false;
  }
  if (url.username || url.password || ENCODED_SEPARATOR.test(url.pathname)) return false;
  if (url.protocol !== pattern.protocol || url.port !== pattern.port) return false;
  if (!hostMatches(url.hostname, pattern.hostname)) return false;
  const prefix = pattern.pathname.replace(/\/+$/, "");
  return prefix === "" || url.pathname === prefix || url.pathname.startsWith(`${prefix}/`);
}
