import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import { SmmfError } from "../errors/SmmfError.js";
import { classifyAddress, type AddressClass } from "./classifyAddress.js";

/** Where outbound connections (e.g. model downloads) may go. */
export interface OutboundPolicy {
  /** Host names or IP literals, exactly, or `*.suffix` patterns (any name under `suffix`); empty: none allowed. */
  allowedHosts: readonly string[];
  /**
   * Lets loopback, private and link-local addresses through. Metadata addresses pass only when this is set AND
   * the URL's host is listed exactly (not through a `*.` pattern).
   */
  allowPrivate: boolean;
}

/** A checked URL and the one address a connection to it must use. */
export interface CheckedUrl {
  url: URL;
  /** The URL's host name, without IPv6 brackets. */
  hostname: string;
  /** The address to connect to: checked, so no other lookup may replace it. */
  address: string;
  family: 4 | 6;
}

export type LookupAll = (hostname: string, options: { all: true; verbatim: true }) => Promise<{ address: string; family: number }[]>;

const PRIVATE_CLASSES = new Set<AddressClass>(["loopback", "private", "link-local"]);

/** The URL as it may be shown: no credentials, query or fragment. */
export function shownUrl(url: URL | string): string {
  try {
    const u = new URL(String(url));
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "(an invalid URL)";
  }
}

function refused(url: URL | string, why: string): SmmfError {
  return new SmmfError("failed_precondition", `'source' ${shownUrl(url)} is not an allowed model source: ${why}`, { param: "source" });
}

/** A host name as compared against the list: lower case, no IPv6 brackets, no trailing dot. */
function normalHost(host: string): string {
  return host.toLowerCase().replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "");
}

/** How `hostname` is listed: "exact", "pattern" (through a `*.suffix` entry) or undefined. */
export function hostListing(hostname: string, allowedHosts: readonly string[]): "exact" | "pattern" | undefined {
  const host = normalHost(hostname);
  if (!host) return undefined;
  let listing: "pattern" | undefined;
  for (const entry of allowedHosts.map(normalHost)) {
    if (entry === host) return "exact";
    // `*.suffix` covers names under suffix (not suffix itself), never IP literals.
    if (entry.startsWith("*.") && entry.length > 2 && !isIP(host) && host.endsWith(entry.slice(1))) listing = "pattern";
  }
  return listing;
}

/**
 * Checks what needs no lookup: an http(s) URL without credentials whose host is allow-listed. Returns the
 * parsed URL and how its host is listed.
 */
export function checkUrlHost(url: string | URL, policy: OutboundPolicy): { url: URL; hostname: string; listing: "exact" | "pattern" } {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    throw refused(url, "it is not a valid URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw refused(parsed, "its scheme is not http or https");
  if (parsed.username || parsed.password) throw refused(parsed, "it carries credentials");
  const hostname = normalHost(parsed.hostname);
  const listing = hostListing(hostname, policy.allowedHosts);
  if (!listing) throw refused(parsed, `host ${hostname || "(none)"} is not in the worker's allowed hosts`);
  return { url: parsed, hostname, listing };
}

function addressAllowed(cls: AddressClass, listing: "exact" | "pattern", policy: OutboundPolicy): boolean {
  if (cls === "public") return true;
  if (PRIVATE_CLASSES.has(cls)) return policy.allowPrivate;
  if (cls === "metadata") return policy.allowPrivate && listing === "exact";
  return false; // unspecified, multicast, broadcast, reserved
}

/**
 * Whether a connection to `url` may be made under `policy`, and to which address: the host must be
 * allow-listed; a name is resolved (all its addresses) and EVERY address must be allowed by its class (see
 * classifyAddress); an IP literal is classified as it is. Connect to the returned address (not the name), so
 * the address checked is the address reached.
 *
 * Fails with failed_precondition on 'source', "... is not an allowed model source: why"; the message never
 * holds more than the URL's scheme, host and path.
 */
export async function checkOutboundUrl(url: string | URL, policy: OutboundPolicy, lookup: LookupAll = dnsLookup as LookupAll): Promise<CheckedUrl> {
  const { url: parsed, hostname, listing } = checkUrlHost(url, policy);
  let addresses: { address: string; family: number }[];
  if (isIP(hostname)) {
    addresses = [{ address: hostname, family: isIP(hostname) }];
  } else {
    try {
      addresses = await lookup(hostname, { all: true, verbatim: true });
    } catch (err) {
      throw refused(parsed, `host ${hostname} does not resolve (${(err as NodeJS.ErrnoException).code ?? "lookup failed"})`);
    }
    if (addresses.length === 0) throw refused(parsed, `host ${hostname} does not resolve`);
  }
  for (const { address } of addresses) {
    let cls: AddressClass;
    try {
      cls = classifyAddress(address);
    } catch {
      throw refused(parsed, `host ${hostname} resolves to something that is not an IP address`);
    }
    if (!addressAllowed(cls, listing, policy)) {
      const hint = PRIVATE_CLASSES.has(cls) ? " (the worker does not allow private addresses)" : cls === "metadata" ? " (list the host exactly, and allow private addresses, to reach it)" : "";
      throw refused(parsed, `host ${hostname} resolves to ${/^[aeiou]/.test(cls) ? "an" : "a"} ${cls} address${hint}`);
    }
  }
  const { address, family } = addresses[0];
  return { url: parsed, hostname, address, family: family === 6 ? 6 : 4 };
}
