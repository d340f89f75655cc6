import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The llama.cpp source that node-llama-cpp's package ships, and the key of the llama-server built from it. */
export interface LlamaServerSource {
  /** node-llama-cpp's package folder. */
  packageDir: string;
  /** The git bundle of llama.cpp's source at the release node-llama-cpp builds. */
  bundle: string;
  /** Patches node-llama-cpp applies to that source (llama/patches/*.diff). */
  patchesDir: string;
  /** `<node-llama-cpp version>-<llama.cpp release tag>`: one build per pair. */
  key: string;
}

/** node-llama-cpp's bundled llama.cpp source; undefined when node-llama-cpp (optional) is not installed. */
export function llamaServerSource(): LlamaServerSource | undefined {
  let entry: string;
  try {
    entry = fileURLToPath(import.meta.resolve("node-llama-cpp"));
  } catch {
    return undefined;
  }
  let dir = dirname(entry);
  while (!existsSync(join(dir, "llama", "gitRelease.bundle"))) {
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
  const version = (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
  const tag = (JSON.parse(readFileSync(join(dir, "llama", "llama.cpp.info.json"), "utf8")) as { tag: string }).tag;
  return { packageDir: dir, bundle: join(dir, "llama", "gitRelease.bundle"), patchesDir: join(dir, "llama", "patches"), key: `${version}-${tag}` };
}

/** Where built llama-servers are kept: `$XDG_CACHE_HOME/smmf/llama-server` (default `~/.cache/smmf/llama-server`). */
export function llamaServerCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "smmf", "llama-server");
}

/** The path the build of this source has in the cache (it may not exist yet). */
export function cachedLlamaServerPath(source: LlamaServerSource, env: NodeJS.ProcessEnv = process.env): string {
  return join(llamaServerCacheDir(env), source.key, "llama-server");
}

function isExecutableFile(path: string): boolean {
  try {
    const s = statSync(path);
    return s.isFile() && (s.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * The llama-server binary the `llama.cpp-server` engine runs: `SMMF_LLAMA_SERVER` when set (any build, such
 * as one with CUDA; it must exist), else the cached build of node-llama-cpp's llama.cpp (`smmf engine build`).
 * Undefined when there is none.
 */
export function findLlamaServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.SMMF_LLAMA_SERVER) return isExecutableFile(env.SMMF_LLAMA_SERVER) ? env.SMMF_LLAMA_SERVER : undefined;
  const source = llamaServerSource();
  if (!source) return undefined;
  const path = cachedLlamaServerPath(source, env);
  return isExecutableFile(path) ? path : undefined;
}
