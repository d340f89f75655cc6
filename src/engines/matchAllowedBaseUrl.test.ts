import { describe, expect, it } from "vitest";
import { checkAllowedBaseUrl, matchAllowedBaseUrl } from "./matchAllowedBaseUrl.js";

const OPENAI = "https://api.openai.com/v1";
const AZURE = "https://*.openai.azure.com/openai/deployments/";

describe("matchAllowedBaseUrl", () => {
  it("allows the base URL itself and paths under it, at a '/' boundary", () => {
    expect(matchAllowedBaseUrl("https://api.openai.com/v1", OPENAI)).toBe(true);
    expect(matchAllowedBaseUrl("https://api.openai.com/v1/", OPENAI)).toBe(true);
    expect(matchAllowedBaseUrl("https://api.openai.com/v1/org-a", OPENAI)).toBe(true);
    expect(matchAllowedBaseUrl("https://api.openai.com/v10", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com/v1beta", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com/", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com", OPENAI)).toBe(false);
  });

  it("a trailing slash in the allowed URL changes nothing; a root allows every path", () => {
    expect(matchAllowedBaseUrl("https://api.openai.com/v1", "https://api.openai.com/v1/")).toBe(true);
    expect(matchAllowedBaseUrl("https://api.openai.com/v1x", "https://api.openai.com/v1/")).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com/anything/v1", "https://api.openai.com")).toBe(true);
    expect(matchAllowedBaseUrl("https://api.openai.com/anything/v1", "https://api.openai.com/")).toBe(true);
  });

  it("resolves '..' before comparing, and refuses encoded separators", () => {
    expect(matchAllowedBaseUrl("https://api.openai.com/v1/../admin", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com/v1/./chat/..", OPENAI)).toBe(true);
    expect(matchAllowedBaseUrl("https://api.openai.com/v1/%2e%2e/admin", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com/v1/..%2Fadmin", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com/v1/..%5cadmin", OPENAI)).toBe(false);
  });

  it("requires the same scheme and port (default ports normalized)", () => {
    expect(matchAllowedBaseUrl("http://api.openai.com/v1", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com:443/v1", OPENAI)).toBe(true);
    expect(matchAllowedBaseUrl("https://api.openai.com:8443/v1", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1")).toBe(false);
    expect(matchAllowedBaseUrl("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1")).toBe(true);
    expect(matchAllowedBaseUrl("http://127.0.0.1/v1", "http://127.0.0.1:80/v1")).toBe(true);
  });

  it("requires the same host, case aside; look-alikes do not match", () => {
    expect(matchAllowedBaseUrl("https://API.OpenAI.com/v1", OPENAI)).toBe(true);
    expect(matchAllowedBaseUrl("https://api.openai.com.evil.example/v1", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://evil-api.openai.com/v1", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://xapi.openai.com/v1", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com.:443/v1", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com@evil.example/v1", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://user:pw@api.openai.com/v1", OPENAI)).toBe(false);
  });

  it("a '*.' wildcard stands for exactly one leftmost label", () => {
    expect(matchAllowedBaseUrl("https://acme.openai.azure.com/openai/deployments/gpt-4o", AZURE)).toBe(true);
    expect(matchAllowedBaseUrl("https://ACME.openai.azure.com/openai/deployments/gpt-4o", AZURE)).toBe(true);
    expect(matchAllowedBaseUrl("https://openai.azure.com/openai/deployments/gpt-4o", AZURE)).toBe(false);
    expect(matchAllowedBaseUrl("https://a.b.openai.azure.com/openai/deployments/gpt-4o", AZURE)).toBe(false);
    expect(matchAllowedBaseUrl("https://acme.openai.azure.com.evil.example/openai/deployments/x", AZURE)).toBe(false);
    expect(matchAllowedBaseUrl("https://acmeopenai.azure.com/openai/deployments/x", AZURE)).toBe(false);
    expect(matchAllowedBaseUrl("https://acme.openai.azure.com/openai/other", AZURE)).toBe(false);
    expect(matchAllowedBaseUrl("https://acme.openai.azure.com/openai/deploymentsX", AZURE)).toBe(false);
    expect(matchAllowedBaseUrl("http://acme.openai.azure.com/openai/deployments/x", AZURE)).toBe(false);
  });

  it("never matches what is not a URL, nor an allowed URL that is not valid", () => {
    expect(matchAllowedBaseUrl("not a url", OPENAI)).toBe(false);
    expect(matchAllowedBaseUrl("https://api.openai.com/v1", "not a url")).toBe(false);
    expect(matchAllowedBaseUrl("https://a.b.example.com/v1", "https://a.*.example.com/v1")).toBe(false);
    expect(matchAllowedBaseUrl("https://x.com/v1", "https://*.com/v1")).toBe(false);
    expect(matchAllowedBaseUrl("file:///etc/shadow", "file:///etc")).toBe(false);
  });
});

describe("checkAllowedBaseUrl", () => {
  it("accepts http(s) URLs, with a leftmost wildcard label", () => {
    for (const ok of [OPENAI, AZURE, "http://127.0.0.1:8000/v1", "http://[::1]:8000/v1", "https://gpu1.internal"]) expect(() => checkAllowedBaseUrl(ok), ok).not.toThrow();
  });

  it("refuses anything else, saying why", () => {
    const cases: [string, RegExp][] = [
      ["api.openai.com/v1", /is not a URL/],
      ["ftp://host/v1", /http:\/\/ or https:\/\//],
      ["https://u:p@host/v1", /credentials/],
      ["https://host/v1?x=1", /query or a fragment/],
      ["https://host/v1#x", /query or a fragment/],
      ["https://a.*.example.com/v1", /leftmost label/],
      ["https://*example.com/v1", /leftmost label/],
      ["https://*.com/v1", /top-level domain/],
      ["https://host/v1/a%2Fb", /encoded/],
    ];
    for (const [bad, why] of cases) expect(() => checkAllowedBaseUrl(bad), bad).toThrow(why);
  });
});
