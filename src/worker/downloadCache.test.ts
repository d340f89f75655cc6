import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cachedFiles, evictDownloads, isPinned, pinFile, removeStaleParts, touchFile, trackDownload } from "./downloadCache.js";

// Real files in a fresh temporary folder per test; "last use" is a file's modification time, set explicitly.

let dir: string;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function freshDir(): string {
  dir = mkdtempSync(join(tmpdir(), "smmf-cache-"));
  return dir;
}

/** A cached file of `bytes` bytes named like a download (32 hex digits), last used `usedAt` (seconds since the epoch). */
function cached(name: string, bytes: number, usedAt: number): string {
  const path = join(dir, `${name.padEnd(32, "0")}.gguf`);
  writeFileSync(path, Buffer.alloc(bytes, 1));
  utimesSync(path, usedAt, usedAt);
  return path;
}

const names = () => readdirSync(dir).sort();

describe("evictDownloads", () => {
  it("does nothing while the cache is within its bound", () => {
    freshDir();
    cached("a", 100, 1_000);
    cached("b", 100, 2_000);
    expect(evictDownloads(dir, 200)).toEqual({ removed: [], bytes: 200 });
    expect(names()).toHaveLength(2);
  });

  it("deletes least recently used files first, only as many as it takes", () => {
    freshDir();
    const a = cached("a", 100, 3_000);
    const b = cached("b", 100, 1_000); // oldest
    const c = cached("c", 100, 2_000);
    const d = cached("d", 100, 4_000);
    const result = evictDownloads(dir, 250);
    expect(result).toEqual({ removed: [b, c], bytes: 200 });
    expect(existsSync(a) && existsSync(d)).toBe(true);
  });

  it("never deletes a file in use, even the least recently used; it goes once let go", () => {
    freshDir();
    const old = cached("a", 100, 1_000);
    const newer = cached("b", 100, 2_000);
    const release = pinFile(old);
    expect(isPinned(old)).toBe(true);
    expect(evictDownloads(dir, 150)).toEqual({ removed: [newer], bytes: 100 });
    expect(existsSync(old)).toBe(true);
    release();
    release(); // a second call changes nothing
    expect(isPinned(old)).toBe(false);
    expect(evictDownloads(dir, 50)).toEqual({ removed: [old], bytes: 0 });
  });

  it("counts every user: a file stays in use until the last lets go", () => {
    freshDir();
    const file = cached("a", 100, 1_000);
    const first = pinFile(file);
    const second = pinFile(file);
    first();
    expect(evictDownloads(dir, 0).removed).toEqual([]);
    second();
    expect(evictDownloads(dir, 0).removed).toEqual([file]);
  });

  it("leaves the cache over its bound when only files in use are left", () => {
    freshDir();
    const a = cached("a", 100, 1_000);
    const b = cached("b", 100, 2_000);
    const releases = [pinFile(a), pinFile(b)];
    expect(evictDownloads(dir, 100)).toEqual({ removed: [], bytes: 200 });
    expect(names()).toHaveLength(2);
    releases.forEach((r) => r());
  });

  it("orders by the last recorded use: touching a file makes it the most recent", () => {
    freshDir();
    const a = cached("a", 100, 1_000);
    const b = cached("b", 100, 2_000);
    touchFile(a);
    expect(statSync(a).mtimeMs).toBeGreaterThan(statSync(b).mtimeMs);
    expect(evictDownloads(dir, 100).removed).toEqual([b]);
    touchFile(join(dir, "gone.gguf")); // a missing file is no error
  });

  it("counts what downloads in flight announced, and makes room for them", () => {
    freshDir();
    const a = cached("a", 100, 1_000);
    const b = cached("b", 100, 2_000);
    const download = trackDownload(join(dir, `${"c".padEnd(32, "0")}.gguf.part-0123abcd`));
    download.announce(150);
    expect(evictDownloads(dir, 300)).toEqual({ removed: [a], bytes: 250 });
    download.end();
    expect(evictDownloads(dir, 300)).toEqual({ removed: [], bytes: 100 });
    expect(existsSync(b)).toBe(true);
  });

  it("counts and deletes only downloaded files: other files in the folder are not its own", () => {
    freshDir();
    writeFileSync(join(dir, "notes.txt"), Buffer.alloc(1000));
    writeFileSync(join(dir, "model.gguf"), Buffer.alloc(1000));
    const a = cached("a", 100, 1_000);
    expect(cachedFiles(dir).map((f) => f.path)).toEqual([a]);
    expect(evictDownloads(dir, 0).removed).toEqual([a]);
    expect(names()).toEqual(["model.gguf", "notes.txt"]);
  });

  it("takes a missing folder as an empty cache", () => {
    expect(evictDownloads(join(tmpdir(), "smmf-no-such-cache-folder"), 0)).toEqual({ removed: [], bytes: 0 });
  });
});

describe("removeStaleParts", () => {
  it("deletes temporary files of downloads that are not running, and nothing else", () => {
    freshDir();
    const done = cached("a", 10, 1_000);
    const stale = join(dir, `${"b".padEnd(32, "0")}.gguf.part-deadbeef`);
    const running = join(dir, `${"c".padEnd(32, "0")}.gguf.part-0badf00d`);
    writeFileSync(stale, "GGUF");
    writeFileSync(running, "GGUF");
    writeFileSync(join(dir, "other.part-12345678"), "x");
    const download = trackDownload(running);
    expect(removeStaleParts(dir)).toEqual([stale]);
    expect(existsSync(done) && existsSync(running)).toBe(true);
    download.end();
    expect(removeStaleParts(dir)).toEqual([running]);
    expect(names()).toEqual([`${"a".padEnd(32, "0")}.gguf`, "other.part-12345678"]);
  });
});
