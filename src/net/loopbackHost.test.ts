import { describe, expect, it } from "vitest";
import { isLoopbackHost, isLoopbackHostHeader } from "./loopbackHost.js";

describe("isLoopbackHost", () => {
  it("knows loopback addresses and localhost, and nothing else", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"]) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "192.168.1.1", "128.0.0.1", "example.com", "localhost.example.com", "127.0.0.1.nip.io"]) expect(isLoopbackHost(h), h).toBe(false);
  });
});

describe("isLoopbackHostHeader", () => {
  it("accepts loopback names with or without a port", () => {
    for (const h of ["127.0.0.1:8000", "localhost", "localhost:8000", "[::1]:8000", "app.localhost:3000"]) expect(isLoopbackHostHeader(h), h).toBe(true);
  });
  it("refuses any other name (DNS rebinding) and malformed headers", () => {
    for (const h of ["evil.example:8000", "127.0.0.1.evil.example", "10.0.0.5:8000", "localhost:80:80", "[::1"]) expect(isLoopbackHostHeader(h), h).toBe(false);
  });
});
