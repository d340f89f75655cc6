import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

let bundled: Promise<URL> | undefined;

/**
 * The telemetry thread's code. Compiled (dist/), its module. From the TypeScript sources (tsx, in a checkout),
 * one ES module (a data: URL) bundled with esbuild (a dev dependency) once per process. Packages stay outside the bundle, imported by absolute file
 * URL. A thread started this way does not load tsx: that saves ~20 MB of memory and ~0.5 s of start-up.
 */
export function bundleThreadSource(): Promise<URL> {
  // Compiled (dist/, npm run build): the thread runs its own compiled module; nothing is bundled at start.
  if (import.meta.url.endsWith(".js")) return Promise.resolve(new URL("./runTelemetryThread.js", import.meta.url));
  bundled ??= (async () => {
    const entry = fileURLToPath(new URL("./runTelemetryThread.ts", import.meta.url));
    const require = createRequire(entry);
    const { build } = await import("esbuild");
    const out = await build({
      entryPoints: [entry],
      bundle: true,
      format: "esm",
      platform: "node",
      target: "node20",
      write: false,
      logLevel: "silent",
      plugins: [
        {
          name: "packages-by-path",
          setup(b) {
            b.onResolve({ filter: /^[^./]/ }, (a) => (a.path.startsWith("node:") ? undefined : { path: pathToFileURL(require.resolve(a.path)).href, external: true }));
          },
        },
      ],
    });
    return new URL(`data:text/javascript,${encodeURIComponent(out.outputFiles[0].text)}`);
  })();
  bundled.catch(() => (bundled = undefined));
  return bundled;
}
