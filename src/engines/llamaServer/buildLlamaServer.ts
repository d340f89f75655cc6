import { spawn } from "node:child_process";
import { createWriteStream, existsSync, readdirSync, type WriteStream } from "node:fs";
import { copyFile, mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { SmmfError } from "../../errors/SmmfError.js";
import { cachedLlamaServerPath, llamaServerCacheDir, llamaServerSource } from "./llamaServerBuild.js";

export interface BuildOptions {
  /** Parallel compile jobs; default: the machine's cores. */
  jobs?: number;
  /** Build again even when the cache has it. */
  force?: boolean;
  /** Progress, one line at a time. */
  progress?: (line: string) => void;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

/** The tools a build needs, and the Debian packages that have them. */
const TOOLS: readonly [string, string][] = [
  ["git", "git"],
  ["cmake", "cmake"],
  ["c++", "g++"],
];

function onPath(tool: string, env: NodeJS.ProcessEnv): boolean {
  return (env.PATH ?? "").split(":").some((dir) => dir && existsSync(join(dir, tool)));
}

function run(command: string, args: string[], cwd: string, log: WriteStream, signal: AbortSignal | undefined, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    log.write(`$ ${command} ${args.join(" ")}\n`);
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"], signal });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    child.on("error", (err) => reject(err.name === "AbortError" ? new SmmfError("cancelled", "build cancelled") : err));
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args[0]} exited with ${code}`))));
  });
}

/**
 * Builds llama.cpp's own `llama-server` from the llama.cpp source node-llama-cpp's package ships (its git
 * bundle, with the patches node-llama-cpp applies), statically linked, CPU backend, and keeps it in the cache
 * (see llamaServerCacheDir) under a key of node-llama-cpp's version and llama.cpp's release: built once per
 * machine, shared by every worker there. Needs git, cmake and a C++ compiler; 15–25 minutes on 2 cores.
 * Several builds at once are safe: each builds in its own folder, and the first to finish is kept.
 * Resolves with the binary's path.
 */
export async function buildLlamaServer(options: BuildOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const progress = options.progress ?? (() => {});
  const source = llamaServerSource();
  if (!source) throw new SmmfError("failed_precondition", "node-llama-cpp is not installed: llama-server is built from the llama.cpp source in its package (npm ci installs it)");
  const target = cachedLlamaServerPath(source, env);
  if (!options.force && existsSync(target)) return target;
  const missing = TOOLS.filter(([tool]) => !onPath(tool, env));
  if (missing.length > 0) {
    throw new SmmfError(
      "failed_precondition",
      `building llama-server needs ${missing.map(([t]) => t).join(", ")} on PATH (Debian: apt-get install ${missing.map(([, p]) => p).join(" ")})`,
    );
  }
  const cache = llamaServerCacheDir(env);
  await mkdir(cache, { recursive: true });
  const work = await mkdtemp(join(cache, `.build-${source.key}-`));
  const logPath = join(work, "build.log");
  const log = createWriteStream(logPath);
  const src = join(work, "src");
  const build = join(src, "build");
  const jobs = String(options.jobs ?? availableParallelism());
  let built = false;
  try {
    progress(`llama.cpp ${source.key}: extracting the source from ${source.bundle}`);
    await run("git", ["clone", "--quiet", source.bundle, src], work, log, options.signal, env);
    const patches = existsSync(source.patchesDir) ? readdirSync(source.patchesDir).filter((f) => f.endsWith(".diff") || f.endsWith(".patch")).sort() : [];
    for (const patch of patches) {
      progress(`applying ${patch}`);
      await run("git", ["apply", join(source.patchesDir, patch)], src, log, options.signal, env);
    }
    progress("configuring (cmake)");
    await run(
      "cmake",
      ["-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DGGML_CCACHE=OFF"],
      work,
      log,
      options.signal,
      env,
    );
    progress(`compiling llama-server with ${jobs} jobs (15–25 minutes on 2 cores; log: ${logPath})`);
    await run("cmake", ["--build", build, "--target", "llama-server", "-j", jobs], work, log, options.signal, env);
    const out = join(work, "out");
    await mkdir(out);
    await copyFile(join(build, "bin", "llama-server"), join(out, "llama-server"));
    await mkdir(join(cache, source.key), { recursive: true });
    // The binary appears at its path whole, or not at all (a running one keeps its old file).
    await rename(join(out, "llama-server"), target);
    built = true;
    progress(`built ${target}`);
    return target;
  } catch (err) {
    if (err instanceof SmmfError) throw err;
    throw new SmmfError("internal", `building llama-server failed: ${(err as Error).message} (log: ${logPath})`, { cause: err });
  } finally {
    await new Promise((resolve) => log.end(resolve));
    // The log stays where a failure said it is; a success leaves nothing behind.
    if (built || options.signal?.aborted) await rm(work, { recursive: true, force: true });
  }
}
