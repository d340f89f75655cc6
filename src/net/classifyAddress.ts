import { isIPv4, isIPv6 } from "node:net";

/**
 * What an IP address reaches, for outbound-connection policies:
 * - `loopback`: this machine (127/8, ::1);
 * - `private`: networks of the site (10/8, 172.16/12, 192.168/16, 100.64/10 carrier-grade NAT, fc00::/7 unique
 *   local, fec0::/10 deprecated site-local, 64:ff9b:1::/48 local-use NAT64);
 * - `link-local`: the attached link (169.254/16, fe80::/10);
 * - `metadata`: cloud instance-metadata and platform endpoints, which hand out credentials (see METADATA_V4/V6);
 * - `unspecified`: "this host / this network" (0/8, ::) — a connection to 0.0.0.0 reaches this machine on Linux;
 * - `multicast` (224/4, ff00::/8), `broadcast` (255.255.255.255);
 * - `reserved`: documentation, benchmarking, protocol-assignment, future-use and other special-purpose ranges
 *   (IANA special-purpose registries), IPv6 outside 2000::/3, Teredo, discard-only;
 * - `public`: everything else.
 *
 * IPv6 addresses that embed an IPv4 address which the network delivers to (IPv4-mapped ::ffff:0:0/96,
 * IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16) take the class of the embedded address, so that
 * ::ffff:127.0.0.1 is `loopback` and 64:ff9b::a9fe:a9fe is `metadata`.
 *
 * Pure: no lookup, no connection. Throws a TypeError for a string that is not an IPv4 or IPv6 address.
 */
export type AddressClass = "loopback" | "private" | "link-local" | "metadata" | "unspecified" | "multicast" | "broadcast" | "reserved" | "public";

/**
 * Cloud metadata endpoints (IPv4), each a well-known target of server-side request forgery:
 * - 169.254.169.254: AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack, Hetzner... instance metadata;
 * - 169.254.170.2: AWS ECS task metadata and credentials; 169.254.170.23: AWS EKS Pod Identity agent;
 * - 169.254.0.23: Tencent Cloud metadata (metadata.tencentyun.com);
 * - 100.100.100.200: Alibaba Cloud metadata;
 * - 168.63.129.16: Azure WireServer (platform agent endpoint, reachable from every Azure VM; a public-looking address).
 */
const METADATA_V4 = new Set(["169.254.169.254", "169.254.170.2", "169.254.170.23", "169.254.0.23", "100.100.100.200", "168.63.129.16"]);
/** Cloud metadata endpoints (IPv6): AWS IMDS (fd00:ec2::254) and the EKS Pod Identity agent (fd00:ec2::23). */
const METADATA_V6 = new Set(["fd00:ec2:0:0:0:0:0:254", "fd00:ec2:0:0:0:0:0:23"]);

/** IPv4 ranges, most specific first where they overlap: [first address, prefix length, class]. */
const V4_RANGES: [string, number, AddressClass][] = [
  ["255.255.255.255", 32, "broadcast"],
  ["0.0.0.0", 8, "unspecified"],
  ["127.0.0.0", 8, "loopback"],
  ["10.0.0.0", 8, "private"],
  ["172.16.0.0", 12, "private"],
  ["192.168.0.0", 16, "private"],
  ["100.64.0.0", 10, "private"],
  ["169.254.0.0", 16, "link-local"],
  ["192.0.0.0", 24, "reserved"], // IETF protocol assignments
  ["192.0.2.0", 24, "reserved"], // TEST-NET-1
  ["192.88.99.0", 24, "reserved"], // deprecated 6to4 relay anycast
  ["198.18.0.0", 15, "reserved"], // benchmarking
  ["198.51.100.0", 24, "reserved"], // TEST-NET-2
  ["203.0.113.0", 24, "reserved"], // TEST-NET-3
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved"], // future use
];

function v4Number(address: string): number {
  return address.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

function inV4Range(n: number, first: string, prefix: number): boolean {
  const size = 2 ** (32 - prefix);
  return Math.floor(n / size) === Math.floor(v4Number(first) / size);
}

function classifyV4(address: string): AddressClass {
  if (METADATA_V4.has(address)) return "metadata";
  const n = v4Number(address);
  for (const [first, prefix, cls] of V4_RANGES) if (inV4Range(n, first, prefix)) return cls;
  return "public";
}

/** The eight 16-bit groups of an IPv6 address (already checked by isIPv6, zone removed). */
function v6Groups(address: string): number[] {
  let text = address;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const n = v4Number(dotted[1]);
    tail.push(Math.floor(n / 65536), n % 65536);
    text = text.slice(0, -dotted[1].length);
    if (text.endsWith(":") && !text.endsWith("::")) text = text.slice(0, -1);
  }
  const parse = (s: string) => (s ? s.split(":").map((g) => parseInt(g, 16)) : []);
  const gap = text.indexOf("::");
  let groups: number[];
  if (gap >= 0) {
    const head = parse(text.slice(0, gap));
    const rest = parse(text.slice(gap + 2));
    const fill = 8 - tail.length - head.length - rest.length;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    groups = parse(text);
  }
  return [...groups, ...tail];
}

function v4Of(high: number, low: number): string {
  return [high >> 8, high & 255, low >> 8, low & 255].join(".");
}

function classifyV6(address: string): AddressClass {
  const g = v6Groups(address);
  if (METADATA_V6.has(g.map((x) => x.toString(16)).join(":"))) return "metadata";
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 8)) return "unspecified";
  if (zeros(0, 7) && g[7] === 1) return "loopback";
  // IPv4-mapped ::ffff:a.b.c.d: the IPv4 address itself.
  if (zeros(0, 5) && g[5] === 0xffff) return classifyV4(v4Of(g[6], g[7]));
  // IPv4-compatible ::a.b.c.d (deprecated): never public.
  if (zeros(0, 6)) {
    const cls = classifyV4(v4Of(g[6], g[7]));
    return cls === "public" ? "reserved" : cls;
  }
  // NAT64 well-known prefix 64:ff9b::/96: the gateway connects to the embedded IPv4 address.
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return classifyV4(v4Of(g[6], g[7]));
  // Local-use NAT64 64:ff9b:1::/48 (RFC 8215): translated into the site's own IPv4 networks.
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 1) return "private";
  // 6to4 2002:a.b.c.d::/48: relayed to the embedded IPv4 address.
  if (g[0] === 0x2002) return classifyV4(v4Of(g[1], g[2]));
  const top = g[0];
  if (top >= 0xff00) return "multicast";
  if (top >= 0xfe80 && top <= 0xfebf) return "link-local";
  if (top >= 0xfec0 && top <= 0xfeff) return "private"; // deprecated site-local
  if (top >= 0xfc00 && top <= 0xfdff) return "private"; // unique local
  if (top === 0x2001 && g[1] === 0x0db8) return "reserved"; // documentation
  if (top === 0x3fff && g[1] <= 0x0fff) return "reserved"; // documentation (RFC 9637)
  if (top === 0x2001 && g[1] <= 0x01ff) return "reserved"; // IETF protocol assignments, Teredo 2001::/32 included
  if (top === 0x0100 && zeros(1, 4)) return "reserved"; // discard-only 100::/64
  if (top < 0x2000 || top > 0x3fff) return "reserved"; // outside global unicast 2000::/3
  return "public";
}

export function classifyAddress(address: string): AddressClass {
  if (isIPv4(address)) return classifyV4(address);
  const bare = address.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, "");
  if (isIPv6(bare)) return classifyV6(bare.toLowerCase());
  throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
}
