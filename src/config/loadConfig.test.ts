import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SmmfError } from "../errors/SmmfError.js";
import { DEFAULTS, DEFAULT_MODEL, loadConfig, modelPath, type ConfigFlags } from "./loadConfig.js";
import { expectInvalid } from "../../test/helpers/expectInvalid.js";

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "smmf-config-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(content: unknown, name = "smmf.config.json"): string {
  const path = join(dir, name);
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

const invalid = (fn: () => unknown): SmmfError => expectInvalid(fn);

describe("loadConfig", () => {
  it("gives the defaults with no file, env or flags", () => {
    const config = loadConfig({}, {}, dir);
    expect(config).toEqual({ ...DEFAULTS, modelDir: join(dir, "models"), dataDir: join(dir, "data"), models: [DEFAULT_MODEL] });
    expect(config.port).toBe(8000);
    expect(config.host).toBe("127.0.0.1");
  });

  it("defaults to the stories260K model when none is configured", () => {
    const config = loadConfig({}, {}, dir);
    expect(config.models).toEqual([{ name: "stories260K", file: "stories260K.gguf" }]);
    expect(modelPath(config, config.models[0])).toBe(join(dir, "models", "stories260K.gguf"));
  });

  it("does not mutate DEFAULTS", () => {
    loadConfig({ port: "1234", model: ["a=b.gguf"] }, { SMMF_THREADS: "3" }, dir);
    expect(DEFAULTS.port).toBe(8000);
    expect(DEFAULTS.threads).toBe(0);
    expect(DEFAULTS.models).toEqual([]);
  });

  describe("precedence: defaults < file < env < flags", () => {
    beforeEach(() => {
      writeConfig({ port: 1000, host: "0.0.0.0", threads: 3, sequences: 2 });
    });

    it("file overrides defaults (./smmf.config.json found in cwd)", () => {
      const config = loadConfig({}, {}, dir);
      expect(config.port).toBe(1000);
      expect(config.host).toBe("0.0.0.0");
      expect(config.threads).toBe(3);
      expect(config.sequences).toBe(2);
      expect(config.contextSize).toBe(DEFAULTS.contextSize);
    });

    it("env overrides the file", () => {
      const config = loadConfig({}, { SMMF_PORT: "2000", SMMF_THREADS: "5" }, dir);
      expect(config.port).toBe(2000);
      expect(config.threads).toBe(5);
      expect(config.host).toBe("0.0.0.0");
    });

    it("flags override env and file", () => {
      const config = loadConfig({ port: "3000", host: "::1" }, { SMMF_PORT: "2000", SMMF_HOST: "10.0.0.1", SMMF_THREADS: "5" }, dir);
      expect(config.port).toBe(3000);
      expect(config.host).toBe("::1");
      expect(config.threads).toBe(5);
      expect(config.sequences).toBe(2);
    });

    it("empty env values are ignored", () => {
      expect(loadConfig({}, { SMMF_PORT: "" }, dir).port).toBe(1000);
    });
  });

  it("reads every SMMF_* variable", () => {
    const config = loadConfig(
      {},
      {
        SMMF_HOST: "h",
        SMMF_PORT: "1",
        SMMF_WORKER_HOST: "wh",
        SMMF_WORKER_PORT: "2",
        SMMF_MODEL_DIR: "md",
        SMMF_THREADS: "3",
        SMMF_SEQUENCES: "4",
        SMMF_CONTEXT_SIZE: "512",
        SMMF_GPU: "off",
        SMMF_MAX_BODY_BYTES: "100",
        SMMF_LOG_LEVEL: "debug",
      },
      dir,
    );
    expect(config).toMatchObject({
      host: "h",
      port: 1,
      workerHost: "wh",
      workerPort: 2,
      modelDir: join(dir, "md"),
      threads: 3,
      sequences: 4,
      contextSize: 512,
      gpu: "off",
      maxBodyBytes: 100,
      logLevel: "debug",
    });
  });

  it("reads every flag", () => {
    const flags: ConfigFlags = {
      host: "h",
      port: "65535",
      "worker-host": "wh",
      "worker-port": "0",
      "model-dir": "/abs/models",
      threads: "0",
      sequences: "1",
      "context-size": "0",
      gpu: "auto",
      "max-body-bytes": "1",
      "log-level": "silent",
    };
    expect(loadConfig(flags, { SMMF_GPU: "off" }, dir)).toMatchObject({
      host: "h",
      port: 65535,
      workerHost: "wh",
      workerPort: 0,
      modelDir: "/abs/models",
      threads: 0,
      sequences: 1,
      contextSize: 0,
      gpu: "auto",
      maxBodyBytes: 1,
      logLevel: "silent",
    });
  });

  describe("config file location and modelDir", () => {
    it("resolves modelDir in a config file relative to the file's folder", () => {
      const path = writeConfig({ modelDir: "../shared/models" }, "conf/sub/c.json");
      const config = loadConfig({ config: path }, {}, "/");
      expect(config.modelDir).toBe(join(dir, "conf", "shared", "models"));
    });

    it("keeps an absolute modelDir from the file", () => {
      writeConfig({ modelDir: "/opt/models" });
      expect(loadConfig({}, {}, dir).modelDir).toBe("/opt/models");
    });

    it("without modelDir in the file, uses 'models' beside the file", () => {
      writeConfig({ port: 1 }, "conf/c.json");
      expect(loadConfig({ config: "conf/c.json" }, {}, dir).modelDir).toBe(join(dir, "conf", "models"));
    });

    it("a relative --config is resolved against cwd", () => {
      writeConfig({ port: 4321 }, "elsewhere.json");
      expect(loadConfig({ config: "elsewhere.json" }, {}, dir).port).toBe(4321);
    });

    it("SMMF_CONFIG picks the file; --config wins over it", () => {
      writeConfig({ port: 1111 }, "a.json");
      writeConfig({ port: 2222 }, "b.json");
      expect(loadConfig({}, { SMMF_CONFIG: "a.json" }, dir).port).toBe(1111);
      expect(loadConfig({ config: "b.json" }, { SMMF_CONFIG: "a.json" }, dir).port).toBe(2222);
    });

    it("an explicit config file wins over ./smmf.config.json", () => {
      writeConfig({ port: 1111 });
      writeConfig({ port: 2222 }, "other.json");
      expect(loadConfig({ config: "other.json" }, {}, dir).port).toBe(2222);
    });

    it("SMMF_MODEL_DIR and --model-dir resolve against cwd, overriding the file", () => {
      writeConfig({ modelDir: "from-file" }, "conf/c.json");
      expect(loadConfig({ config: "conf/c.json" }, { SMMF_MODEL_DIR: "from-env" }, dir).modelDir).toBe(join(dir, "from-env"));
      expect(loadConfig({ config: "conf/c.json", "model-dir": "from-flag" }, { SMMF_MODEL_DIR: "from-env" }, dir).modelDir).toBe(
        join(dir, "from-flag"),
      );
    });

    it("models from the file are kept, with relative files looked up in modelDir", () => {
      writeConfig({ modelDir: "m", models: [{ name: "tiny", file: "tiny.gguf", sequences: 2 }] });
      const config = loadConfig({}, {}, dir);
      expect(config.models).toEqual([{ name: "tiny", file: "tiny.gguf", sequences: 2 }]);
      expect(modelPath(config, config.models[0])).toBe(join(dir, "m", "tiny.gguf"));
    });
  });

  describe("bad config files", () => {
    it("rejects an unknown setting", () => {
      writeConfig({ port: 1, prot: 2 });
      expect(invalid(() => loadConfig({}, {}, dir)).message).toContain("'prot'");
    });

    it("rejects a missing file", () => {
      expect(invalid(() => loadConfig({ config: "nope.json" }, {}, dir)).message).toContain("ENOENT");
    });

    it("rejects invalid JSON", () => {
      writeConfig("{ port: 1 ");
      expect(invalid(() => loadConfig({}, {}, dir)).message).toContain("not valid JSON");
    });

    it("rejects a JSON value that is not an object", () => {
      writeConfig([1, 2]);
      invalid(() => loadConfig({}, {}, dir));
      writeConfig("null");
      invalid(() => loadConfig({}, {}, dir));
      writeConfig("42");
      invalid(() => loadConfig({}, {}, dir));
    });

    it("validates setting values from the file like env and flags", () => {
      writeConfig({ port: "abc" });
      invalid(() => loadConfig({}, {}, dir));
      writeConfig({ gpu: "yes" });
      invalid(() => loadConfig({}, {}, dir));
      writeConfig({ threads: -5 });
      invalid(() => loadConfig({}, {}, dir));
    });

    it("rejects models that are not an array", () => {
      writeConfig({ models: { name: "a", file: "b" } });
      expect(invalid(() => loadConfig({}, {}, dir)).message).toContain("must be an array");
    });

    it("rejects model entries without name or file", () => {
      writeConfig({ models: [{ name: "ok", file: "ok.gguf" }, { name: "x" }] });
      expect(invalid(() => loadConfig({}, {}, dir)).message).toContain("models[1]");
      writeConfig({ models: [{ name: "", file: "f" }] });
      invalid(() => loadConfig({}, {}, dir));
      writeConfig({ models: ["a=b"] });
      invalid(() => loadConfig({}, {}, dir));
    });
  });

  describe("invalid values from env and flags", () => {
    it.each(["abc", "-1", "65536", "1.5", "0x"])("rejects port %s", (port) => {
      const err = invalid(() => loadConfig({ port }, {}, dir));
      expect(err.message).toContain("--port");
    });

    it("names the env variable when the env value is bad", () => {
      expect(invalid(() => loadConfig({}, { SMMF_PORT: "http" }, dir)).message).toContain("SMMF_PORT");
      expect(invalid(() => loadConfig({}, { SMMF_WORKER_PORT: "99999" }, dir)).message).toContain("SMMF_WORKER_PORT");
    });

    it("rejects bad threads", () => {
      invalid(() => loadConfig({ threads: "-1" }, {}, dir));
      invalid(() => loadConfig({ threads: "2.5" }, {}, dir));
      invalid(() => loadConfig({ threads: "1025" }, {}, dir));
      expect(invalid(() => loadConfig({}, { SMMF_THREADS: "many" }, dir)).message).toContain("SMMF_THREADS");
      expect(loadConfig({ threads: "1024" }, {}, dir).threads).toBe(1024);
    });

    it("rejects sequences below 1", () => {
      invalid(() => loadConfig({ sequences: "0" }, {}, dir));
    });

    it("rejects gpu other than auto/off", () => {
      expect(invalid(() => loadConfig({ gpu: "on" }, {}, dir)).message).toContain("--gpu");
      expect(invalid(() => loadConfig({}, { SMMF_GPU: "cuda" }, dir)).message).toContain("SMMF_GPU");
    });

    it("rejects unknown log levels", () => {
      invalid(() => loadConfig({ "log-level": "verbose" }, {}, dir));
    });

    it("a bad env value fails even when a flag would override it", () => {
      invalid(() => loadConfig({ port: "80" }, { SMMF_PORT: "bad" }, dir));
    });
  });

  describe("models from SMMF_MODELS and --model", () => {
    it("parses SMMF_MODELS as comma separated name=path pairs, trimming blanks", () => {
      const config = loadConfig({}, { SMMF_MODELS: " a=a.gguf , b=/abs/b.gguf,," }, dir);
      expect(config.models).toEqual([
        { name: "a", file: join(dir, "a.gguf") },
        { name: "b", file: "/abs/b.gguf" },
      ]);
    });

    it("parses repeated --model flags", () => {
      const config = loadConfig({ model: ["x=models/x.gguf", "y=/y.gguf"] }, {}, dir);
      expect(config.models).toEqual([
        { name: "x", file: join(dir, "models", "x.gguf") },
        { name: "y", file: "/y.gguf" },
      ]);
    });

    it("splits on the first '=' only", () => {
      const config = loadConfig({ model: ["q=/p/a=b.gguf"] }, {}, dir);
      expect(config.models).toEqual([{ name: "q", file: "/p/a=b.gguf" }]);
    });

    it("--model replaces SMMF_MODELS, which replaces the file's models", () => {
      writeConfig({ models: [{ name: "file", file: "f.gguf" }] });
      expect(loadConfig({}, {}, dir).models.map((m) => m.name)).toEqual(["file"]);
      expect(loadConfig({}, { SMMF_MODELS: "env=/e.gguf" }, dir).models.map((m) => m.name)).toEqual(["env"]);
      expect(loadConfig({ model: ["flag=/f.gguf"] }, { SMMF_MODELS: "env=/e.gguf" }, dir).models.map((m) => m.name)).toEqual(["flag"]);
    });

    it("an empty --model list does not replace other models", () => {
      expect(loadConfig({ model: [] }, { SMMF_MODELS: "env=/e.gguf" }, dir).models.map((m) => m.name)).toEqual(["env"]);
    });

    it.each(["noequals", "=path.gguf", "name="])("rejects the pair %s", (pair) => {
      expect(invalid(() => loadConfig({ model: [pair] }, {}, dir)).message).toContain("--model");
      expect(invalid(() => loadConfig({}, { SMMF_MODELS: pair }, dir)).message).toContain("SMMF_MODELS");
    });
  });
});

describe("loadConfig: observability, upstream models and worker settings", () => {
  let d: string;
  beforeEach(() => {
    d = mkdtempSync(join(tmpdir(), "smmf-cfg2-"));
  });
  afterEach(() => rmSync(d, { recursive: true, force: true }));

  it("reads observability settings from flags and env, OTEL_EXPORTER_OTLP_ENDPOINT included", () => {
    const config = loadConfig({ "request-log-capture": "off", "data-dir": "logs" }, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://otel:4318", SMMF_REQUEST_LOG_MAX_ROWS: "50" }, d);
    expect(config).toMatchObject({ otlpEndpoint: "http://otel:4318", requestLogCapture: "off", requestLogMaxRows: 50, dataDir: join(d, "logs"), observability: "on", requestLog: "on" });
    expect(() => loadConfig({ observability: "maybe" }, {}, d)).toThrow(/--observability must be on, off/);
  });

  it("takes upstream models from --proxy name=preset[@url], and refuses unknown presets", () => {
    const config = loadConfig({ proxy: ["llama3=ollama", "qwen=vllm@http://gpu1:8000/v1"] }, {}, d);
    expect(config.models).toEqual([
      { name: "llama3", engine: "ollama", file: "" },
      { name: "qwen", engine: "vllm", file: "", baseUrl: "http://gpu1:8000/v1" },
    ]);
    expect(() => loadConfig({ proxy: ["x=tensorrt"] }, {}, d)).toThrow(/unknown engine 'tensorrt'/);
  });

  it("reads worker labels, memory and --no-models", () => {
    const config = loadConfig({ label: ["zone=a", "gpu=h100"], "max-memory-mb": "512", "no-models": true }, { SMMF_LABELS: "rack=3" }, d);
    expect(config).toMatchObject({ labels: { rack: "3", zone: "a", gpu: "h100" }, maxMemoryMb: 512, models: [] });
    expect(() => loadConfig({ label: ["bad label=x"] }, {}, d)).toThrow(/--label takes key=value/);
  });

  it("reads the access settings: --auth, the cluster secret file (relative to where it is given), CORS origins", () => {
    const config = loadConfig({ auth: "on", "cluster-secret-file": "secret.txt", "cors-origin": ["https://app.example.com", "http://localhost:3000"] }, { SMMF_CORS_ORIGINS: "https://x.example" }, d);
    expect(config).toMatchObject({ auth: "on", clusterSecretFile: join(d, "secret.txt"), corsOrigins: ["https://app.example.com", "http://localhost:3000"] });
    expect(loadConfig({}, { SMMF_AUTH: "off", SMMF_CORS_ORIGINS: "https://x.example, *" }, d)).toMatchObject({ auth: "off", corsOrigins: ["https://x.example", "*"] });
    expect(loadConfig({}, {}, d)).toMatchObject({ auth: "auto", clusterSecretFile: "", corsOrigins: [] });
    expect(() => loadConfig({ auth: "maybe" }, {}, d)).toThrow(/--auth must be auto, on, off/);
    expect(() => loadConfig({ "cors-origin": ["https://app.example.com/path"] }, {}, d)).toThrow(/--cors-origin takes an origin like https:\/\/app.example.com/);
    const file = writeConfig({ auth: "on", corsOrigins: ["https://a.example"] });
    expect(loadConfig({ config: file }, {}, d)).toMatchObject({ auth: "on", corsOrigins: ["https://a.example"] });
    expect(() => loadConfig({ config: writeConfig({ corsOrigins: "https://a.example" }) }, {}, d)).toThrow(/'corsOrigins' in .* must be an array/);
  });
});
