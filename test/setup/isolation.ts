// Run before every test file (vitest's setupFiles). All files share one process (isolate: false, for start-up
// speed on small machines), so a file must leave process-wide state as it found it: the environment, the
// working directory, process listeners, global fetch, the umask. This checks that after each file, puts back
// what it changed, and fails the file, naming what it left behind, so one file cannot make another pass or fail.
import { createRequire } from "node:module";
import { afterAll, beforeAll } from "vitest";

// proper-lockfile (node-llama-cpp loads it) hooks process signals once, when it is first loaded, to release its
// locks at exit: loaded here, that hook is in place before any file's snapshot, not counted against the first
// file that happens to load node-llama-cpp.
try {
  createRequire(import.meta.url)("proper-lockfile");
} catch {
  // Not installed (an install without node-llama-cpp): nothing hooks the signals then.
}

// Not "beforeExit": the llama.cpp binding, loaded once per process by design (getSharedLlama), registers its
// clean-ups there the first time a file uses it.
const EVENTS = ["uncaughtException", "unhandledRejection", "warning", "exit", "SIGTERM", "SIGINT", "SIGHUP", "SIGUSR2"] as const;

let env: Record<string, string | undefined>;
let cwd: string;
let listeners: Map<string, ((...args: unknown[]) => void)[]>;
let fetchBefore: typeof fetch;
let umask: number;

beforeAll(() => {
  env = { ...process.env };
  cwd = process.cwd();
  listeners = new Map(EVENTS.map((e) => [e, process.listeners(e as NodeJS.Signals) as ((...args: unknown[]) => void)[]]));
  fetchBefore = globalThis.fetch;
  umask = process.umask();
});

afterAll(() => {
  const left: string[] = [];
  for (const key of new Set([...Object.keys(env), ...Object.keys(process.env)])) {
    if (env[key] === process.env[key]) continue;
    left.push(`process.env.${key}`);
    if (env[key] === undefined) delete process.env[key];
    else process.env[key] = env[key];
  }
  if (process.cwd() !== cwd) {
    left.push("the working directory");
    process.chdir(cwd);
  }
  for (const [event, before] of listeners) {
    const now = process.listeners(event as NodeJS.Signals) as ((...args: unknown[]) => void)[];
    // exitSet's handlers (test/helpers/exitSet.ts) are one per process by design: they kill what tests leave running at exit.
    const added = now.filter((l) => !before.includes(l) && !l.name.startsWith("exitSet:"));
    if (added.length === 0) continue;
    left.push(`${added.length} '${event}' listener(s) on process`);
    for (const l of added) process.removeListener(event, l);
  }
  if (globalThis.fetch !== fetchBefore) {
    left.push("globalThis.fetch");
    globalThis.fetch = fetchBefore;
  }
  if (process.umask() !== umask) {
    left.push("the umask");
    process.umask(umask);
  }
  if (left.length > 0) throw new Error(`this test file left process-wide state changed (put back now; restore it in the file itself): ${left.join(", ")}`);
});
