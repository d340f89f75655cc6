import { describe, expect, it } from "vitest";
import { checkOutboundUrl, hostListing, type LookupAll, type OutboundPolicy } from "./checkOutboundUrl.js";

/** A resolver from a table: no DNS is asked. Records the names looked up. */
function fakeLookup(table: Record<string, string[]>): LookupAll & { asked: string[] } {
  const asked: string[] = [];
  const fn = async (hostname: string) => {
    asked.push(hostname);
    const addresses = table[hostname];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
    return addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };
  return Object.assign(fn, { asked });
}

const dns = fakeLookup({
  "models.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
  "cdn.models.example.com": ["93.184.216.35"],
  "mixed.example.com": ["93.184.216.34", "10.0.0.5"],
  "rebind.example.com": ["93.184.216.34", "127.0.0.1"],
  "mapped.example.com": ["::ffff:169.254.169.254"],
  "internal.example.com": ["10.1.2.3"],
  "meta.example.com": ["169.254.169.254"],
  "zero.example.com": ["0.0.0.0"],
  "v6only.example.com": ["2001:4860:4860::8888"],
  localhost: ["127.0.0.1", "::1"],
});

const open: OutboundPolicy = { allowedHosts: ["models.example.com", "*.example.com", "127.0.0.1", "::1", "169.254.169.254", "localhost"], allowPrivate: false };

async function refusal(url: string, policy: OutboundPolicy): Promise<{ code: string; param: string; message: string }> {
  const err = await checkOutboundUrl(url, policy, dns).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `${url} should be refused`).toBeDefined();
  return err as { code: string; param: string; message: string };
}

describe("checkOutboundUrl", () => {
  it("allows a listed host whose every address is public, and returns the first address to connect to", async () => {
    const checked = await checkOutboundUrl("https://models.example.com/m.gguf?sig=x", open, dns);
    expect(checked).toMatchObject({ hostname: "models.example.com", address: "93.184.216.34", family: 4 });
    expect(checked.url.href).toBe("https://models.example.com/m.gguf?sig=x");
    expect(await checkOutboundUrl("http://v6only.example.com/m.gguf", open, dns)).toMatchObject({ address: "2001:4860:4860::8888", family: 6 });
  });

  it("refuses every host when the list is empty, before any lookup", async () => {
    const asked = dns.asked.length;
    const err = await refusal("https://models.example.com/m.gguf", { allowedHosts: [], allowPrivate: true });
    expect(err).toMatchObject({ code: "failed_precondition", param: "source" });
    expect(err.message).toBe("'source' https://models.example.com/m.gguf is not an allowed model source: host models.example.com is not in the worker's allowed hosts");
    expect(dns.asked.length).toBe(asked);
  });

  it("matches *.suffix patterns on names under the suffix only, never the suffix itself, look-alikes or IP literals", () => {
    const list = ["*.example.com", "exact.org"];
    expect(hostListing("cdn.models.example.com", list)).toBe("pattern");
    expect(hostListing("a.example.com", list)).toBe("pattern");
    expect(hostListing("A.EXAMPLE.COM.", list)).toBe("pattern");
    expect(hostListing("example.com", list)).toBeUndefined();
    expect(hostListing("evilexample.com", list)).toBeUndefined();
    expect(hostListing("example.com.evil.net", list)).toBeUndefined();
    expect(hostListing("exact.org", list)).toBe("exact");
    expect(hostListing("sub.exact.org", list)).toBeUndefined();
    expect(hostListing("10.0.0.1", ["*.0.1"])).toBeUndefined();
    expect(hostListing("", ["*."])).toBeUndefined();
    expect(hostListing("anything.com", ["*"])).toBeUndefined();
  });

  it("refuses a name when ANY of its addresses is not allowed (no mixing a public address with an internal one)", async () => {
    for (const host of ["mixed.example.com", "rebind.example.com"]) {
      const err = await refusal(`http://${host}/m.gguf`, open);
      expect(err.message).toMatch(/resolves to a (private|loopback) address \(the worker does not allow private addresses\)/);
    }
  });

  it("refuses loopback, private and link-local addresses unless private addresses are allowed", async () => {
    for (const url of ["http://127.0.0.1:8080/m.gguf", "http://[::1]/m.gguf", "http://localhost/m.gguf", "http://internal.example.com/m.gguf"]) {
      expect((await refusal(url, open)).message, url).toContain("is not an allowed model source");
    }
    const allowPrivate = { ...open, allowPrivate: true };
    expect(await checkOutboundUrl("http://127.0.0.1:8080/m.gguf", allowPrivate, dns)).toMatchObject({ address: "127.0.0.1", family: 4 });
    expect(await checkOutboundUrl("http://[::1]:8080/m.gguf", allowPrivate, dns)).toMatchObject({ hostname: "::1", address: "::1", family: 6 });
    expect(await checkOutboundUrl("http://localhost/m.gguf", allowPrivate, dns)).toMatchObject({ address: "127.0.0.1" });
    expect(await checkOutboundUrl("http://internal.example.com/m.gguf", allowPrivate, dns)).toMatchObject({ address: "10.1.2.3" });
  });

  it("refuses IPv4 literals in other spellings the same way (the URL parser canonicalizes them)", async () => {
    for (const url of ["http://2130706433/m.gguf", "http://0x7f.1/m.gguf", "http://0177.0.0.1/m.gguf", "http://[::ffff:127.0.0.1]/m.gguf"]) {
      const err = await refusal(url, { allowedHosts: ["models.example.com"], allowPrivate: true });
      expect(err.message, url).toMatch(/host (127\.0\.0\.1|::ffff:7f00:1) is not in the worker's allowed hosts/);
    }
  });

  it("refuses metadata addresses unless private addresses are allowed AND the host is listed exactly", async () => {
    const allowPrivate = { ...open, allowPrivate: true };
    // Listed through *.example.com only: refused even with private addresses allowed.
    expect((await refusal("http://meta.example.com/latest", allowPrivate)).message).toContain("resolves to a metadata address");
    expect((await refusal("http://mapped.example.com/latest", allowPrivate)).message).toContain("resolves to a metadata address");
    expect((await refusal("http://169.254.169.254/latest", open)).message).toContain("resolves to a metadata address");
    expect(await checkOutboundUrl("http://169.254.169.254/latest", allowPrivate, dns)).toMatchObject({ address: "169.254.169.254" });
    expect(await checkOutboundUrl("http://meta.example.com/latest", { allowedHosts: ["meta.example.com"], allowPrivate: true }, dns)).toMatchObject({ address: "169.254.169.254" });
  });

  it("never allows the unspecified address, even with private addresses allowed", async () => {
    const policy = { allowedHosts: ["0.0.0.0", "zero.example.com"], allowPrivate: true };
    expect((await refusal("http://0.0.0.0:8080/m.gguf", policy)).message).toContain("resolves to an unspecified address");
    expect((await refusal("http://zero.example.com/m.gguf", policy)).message).toContain("resolves to an unspecified address");
  });

  it("refuses other schemes, credentials, invalid URLs and names that do not resolve, with the URL shown without its query", async () => {
    const cases: [string, RegExp][] = [
      ["ftp://models.example.com/m.gguf", /its scheme is not http or https/],
      ["file:///etc/passwd", /its scheme is not http or https/],
      ["https://user:pw@models.example.com/m.gguf", /^'source' https:\/\/models\.example\.com\/m\.gguf is not an allowed model source: it carries credentials$/],
      ["not a url", /not a valid URL/],
      ["https://nowhere.example.com/m.gguf?token=secret", /^'source' https:\/\/nowhere\.example\.com\/m\.gguf is not an allowed model source: host nowhere\.example\.com does not resolve \(ENOTFOUND\)$/],
    ];
    for (const [url, message] of cases) {
      const err = await refusal(url, open);
      expect(err, url).toMatchObject({ code: "failed_precondition", param: "source" });
      expect(err.message, url).toMatch(message);
      expect(err.message).not.toContain("secret");
      expect(err.message).not.toContain("pw");
    }
  });
});
