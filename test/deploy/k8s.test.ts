// The Kubernetes manifests of deploy/k8s: every overlay is rendered with `kubectl kustomize`, every object is
// validated against the Kubernetes OpenAPI schemas offline (kubernetes-models; the Prometheus Operator's for
// ServiceMonitor), unknown fields included, and the manifests are cross-checked against SMMF itself: every
// flag and SMMF_* variable is a setting of its role (src/config/settings.ts) and the CLI's own parser and
// config loader accept the whole command line, config file included; probes, Services, NetworkPolicies and
// the ServiceMonitor use the ports the flags give; termination outlasts --shutdown-grace-ms; only gateways
// and controllers reach workers; the autoscaler's metric is one SMMF exports. The last block breaks rendered
// manifests on purpose and expects each break to be reported.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml"; // a dependency of patch-package (and vite): always installed
import * as coreV1 from "kubernetes-models/v1";
import * as appsV1 from "kubernetes-models/apps/v1";
import * as autoscalingV2 from "kubernetes-models/autoscaling/v2";
import * as policyV1 from "kubernetes-models/policy/v1";
import * as networkingV1 from "kubernetes-models/networking.k8s.io/v1";
import * as monitoringV1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { SECTIONS, SETTINGS, type Command, type Setting } from "../../src/config/settings.js";
import { parseSettingsArgs } from "../../src/config/settingsCli.js";
import { loadConfig } from "../../src/config/loadConfig.js";
import type { SmmfConfig } from "../../src/config/SmmfConfig.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const k8sDir = join(root, "deploy", "k8s");
const overlaysDir = join(k8sDir, "overlays");

/** The images the manifests may run: SMMF's two (deploy/Dockerfile) and etcd's. */
const FULL_IMAGE = "smmf/smmf:0.1.0";
const LIGHT_IMAGE = "smmf/smmf:0.1.0-light";
const ETCD_IMAGE = /^(quay\.io\/coreos\/etcd:v3\.5\.\d+|registry\.k8s\.io\/etcd:3\.5\.\d+-0)$/;
/** Which image each role runs: workers run llama.cpp in their process; gateways and controllers need neither it nor SQLite. */
const IMAGE_OF_ROLE: Record<Role, string> = { worker: FULL_IMAGE, gateway: LIGHT_IMAGE, controller: LIGHT_IMAGE };
/** SMMF's uid/gid in the image. */
const SMMF_UID = 10001;
/** What Node itself takes in a worker besides model instances (MiB), for --max-memory-mb against the memory limit. */
const NODE_BASELINE_MIB = 200;
/** Kubernetes' SIGKILL must come well after the grace (and a preStop pause) is over. */
const TERMINATION_MARGIN_MS = 5_000;

type Role = "worker" | "gateway" | "controller";
const ROLES: readonly Role[] = ["worker", "gateway", "controller"];
// Rendered objects are plain JSON of many shapes: read them loosely.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = any;

// ---- kubectl ------------------------------------------------------------------------------------------------

const KUBECTL_MISSING =
  "kubectl is needed to render deploy/k8s (kubectl kustomize) and was not found on PATH. Install it: as root, " +
  "`bash scripts/ensure-tools.sh` (Debian's kubernetes-client), or `apt-get install -y kubernetes-client`, or " +
  "kubectl from https://kubernetes.io/docs/tasks/tools/ — then run the tests again.";

function kubectl(args: string[]): string {
  const r = spawnSync("kubectl", args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, timeout: 60_000 });
  if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT") throw new Error(KUBECTL_MISSING);
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

function render(dir: string): Obj[] {
  const text = kubectl(["kustomize", dir]);
  const objects: Obj[] = [];
  // YAML 1.1, as Kubernetes reads it (0440 is octal there).
  for (const doc of parseAllDocuments(text, { version: "1.1" })) {
    if (doc.errors.length > 0) throw new Error(`kubectl kustomize ${dir}: YAML errors: ${doc.errors.map((e) => e.message).join("; ")}`);
    const value = doc.toJS();
    if (value !== null && value !== undefined) objects.push(value);
  }
  return objects;
}

// ---- schemas ------------------------------------------------------------------------------------------------

interface ModelClass {
  new (data: Obj): { validate(): void };
  prototype: { validate(): void };
}
const MODULES: Record<string, Record<string, unknown>> = {
  v1: coreV1,
  "apps/v1": appsV1,
  "autoscaling/v2": autoscalingV2,
  "policy/v1": policyV1,
  "networking.k8s.io/v1": networkingV1,
  "monitoring.coreos.com/v1": monitoringV1,
};

function modelOf(obj: Obj): ModelClass | undefined {
  const mod = MODULES[obj?.apiVersion];
  const cls = mod?.[obj?.kind];
  return typeof cls === "function" ? (cls as ModelClass) : undefined;
}

/**
 * Fields the schema does not know. The schemas' validators read every property they know of an object (also
 * the absent ones, to check them); one they never read is unknown — a typo such as `readinesProbe` that the
 * API server would drop (or refuse, with strict field validation). Objects the validator never looks into
 * (free-form ones) are not judged.
 */
function unknownFields(model: ModelClass, obj: Obj): string[] {
  const read = new WeakMap<object, Set<string>>();
  const note = (target: object, key: string | symbol) => {
    if (typeof key !== "string") return;
    let keys = read.get(target);
    if (!keys) read.set(target, (keys = new Set()));
    keys.add(key);
  };
  const wrap = (value: unknown): unknown =>
    value !== null && typeof value === "object"
      ? new Proxy(value, {
          get(target, key, receiver) {
            note(target, key);
            return wrap(Reflect.get(target, key, receiver));
          },
          has(target, key) {
            note(target, key);
            return Reflect.has(target, key);
          },
        })
      : value;
  try {
    model.prototype.validate.call(wrap(obj));
  } catch {
    // Schema errors are reported by validate() itself.
  }
  const unknown: string[] = [];
  const walk = (value: unknown, path: string) => {
    if (Array.isArray(value)) return value.forEach((v, i) => walk(v, `${path}[${i}]`));
    if (value === null || typeof value !== "object") return;
    const keys = read.get(value);
    for (const [key, v] of Object.entries(value)) {
      if (keys && !keys.has(key)) unknown.push(`${path}.${key}`);
      walk(v, `${path}.${key}`);
    }
  };
  walk(obj, "");
  return unknown;
}

function schemaProblems(obj: Obj): string[] {
  const name = `${obj?.kind}/${obj?.metadata?.name}`;
  const model = modelOf(obj);
  if (!model) return [`${name}: no schema for apiVersion ${obj?.apiVersion} kind ${obj?.kind}`];
  const problems: string[] = [];
  try {
    new model(obj).validate();
  } catch (err) {
    problems.push(`${name}: ${(err as Error).message}`);
  }
  for (const field of unknownFields(model, obj)) problems.push(`${name}: unknown field ${field}`);
  return problems;
}

// ---- SMMF's settings ----------------------------------------------------------------------------------------

const ROWS: readonly Setting[] = SETTINGS;
const appliesTo = (row: Setting, role: Role) => (SECTIONS[row.section].commands as readonly Command[]).includes(role);
const settingOfFlag = (flag: string) => ROWS.find((row) => row.flag === flag);
const settingOfEnv = (name: string) => ROWS.find((row) => row.env.includes(name));

/** Every file under src/ (for the metric names and HTTP paths the manifests use). */
function sourceText(): string {
  const parts: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (path.endsWith(".ts") && !path.endsWith(".test.ts")) parts.push(readFileSync(path, "utf8"));
    }
  };
  walk(join(root, "src"));
  return parts.join("\n");
}
const SOURCE = sourceText();

// ---- label selectors ----------------------------------------------------------------------------------------

function matches(selector: Obj, labels: Record<string, string> | undefined): boolean {
  if (!selector) return false;
  const l = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(l, e.key);
    if (e.operator === "In" && !(has && e.values.includes(l[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(l[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}
/** A Service's selector is a plain map. */
const matchesMap = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  selector !== undefined && Object.keys(selector).length > 0 && matches({ matchLabels: selector }, labels);

// ---- the rendered objects of one overlay --------------------------------------------------------------------

interface SmmfContainer {
  workload: Obj;
  pod: Obj;
  container: Obj;
  role: Role;
  where: string;
  /** The settings it runs with, as the CLI loads them (undefined when they do not load). */
  config?: SmmfConfig;
}

const isWorkload = (o: Obj) => o?.kind === "Deployment" || o?.kind === "StatefulSet";
const podLabels = (w: Obj): Record<string, string> => w?.spec?.template?.metadata?.labels ?? {};
const roleOfArgs = (c: Obj): Role | undefined => (ROLES.includes(c?.args?.[0]) ? c.args[0] : undefined);

/** MiB of a Kubernetes quantity (memory). */
function mib(quantity: string | number | undefined): number {
  if (quantity === undefined) return NaN;
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(quantity));
  if (!m) return NaN;
  const unit: Record<string, number> = { Ki: 1 / 1024, Mi: 1, Gi: 1024, Ti: 1024 * 1024, k: 1e3 / 2 ** 20, M: 1e6 / 2 ** 20, G: 1e9 / 2 ** 20, T: 1e12 / 2 ** 20 };
  return Number(m[1]) * (m[2] ? unit[m[2]] : 1 / 2 ** 20);
}
/** Cores of a CPU quantity. */
function cores(quantity: string | number | undefined): number {
  if (quantity === undefined) return NaN;
  const s = String(quantity);
  return s.endsWith("m") ? Number(s.slice(0, -1)) / 1000 : Number(s);
}

/** The `$(VAR)` references of a string (`$$(...)` is an escape). */
const references = (s: string): string[] => [...s.matchAll(/(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)].map((m) => m[1]);

/**
 * Checks one overlay's rendered objects; returns what is wrong (empty: all good). `overlay` is the overlay's
 * folder name: the HA overlays ("ha", "ha-*") must have the HA sizes.
 */
function checkManifests(objects: Obj[], overlay: string): string[] {
  const problems: string[] = [];
  const problem = (message: string) => problems.push(message);
  const byKind = (kind: string) => objects.filter((o) => o?.kind === kind);
  const configMaps = new Map<string, Obj>(byKind("ConfigMap").map((o) => [o.metadata.name, o]));
  const services = byKind("Service");
  const workloads = objects.filter(isWorkload);
  const ha = overlay === "ha" || overlay.startsWith("ha-");

  // Schemas, and names unique per kind.
  const seen = new Set<string>();
  for (const obj of objects) {
    problems.push(...schemaProblems(obj));
    const id = `${obj?.kind}/${obj?.metadata?.namespace ?? ""}/${obj?.metadata?.name}`;
    if (seen.has(id)) problem(`${id} appears twice`);
    seen.add(id);
  }
  // Everything namespaced lives in the overlay's namespace.
  const namespaces = byKind("Namespace").map((o) => o.metadata.name);
  if (namespaces.length !== 1) problem(`expected one Namespace, found ${namespaces.length}`);
  for (const obj of objects) {
    if (obj?.kind === "Namespace") continue;
    if (obj?.metadata?.namespace !== namespaces[0]) problem(`${obj?.kind}/${obj?.metadata?.name} is in namespace ${obj?.metadata?.namespace}, not ${namespaces[0]}`);
  }

  // ---- containers ----
  const smmf: SmmfContainer[] = [];
  const configRoot = mkdtempSync(join(tmpdir(), "smmf-k8s-"));
  try {
    for (const workload of workloads) {
      const pod = workload.spec?.template?.spec ?? {};
      const name = `${workload.kind}/${workload.metadata?.name}`;
      const all = [...(pod.initContainers ?? []), ...(pod.containers ?? [])];
      let runsSmmf = false;
      for (const container of all) {
        const where = `${name} container ${container.name}`;
        const image: string = container.image ?? "";
        if (image !== FULL_IMAGE && image !== LIGHT_IMAGE && !ETCD_IMAGE.test(image)) problem(`${where}: image ${image} is none of ${FULL_IMAGE}, ${LIGHT_IMAGE} or etcd 3.5`);
        if (image === FULL_IMAGE || image === LIGHT_IMAGE) {
          runsSmmf = true;
          if (container.securityContext?.readOnlyRootFilesystem !== true) problem(`${where}: the root file system should be read-only (SMMF writes only under --data-dir and /tmp)`);
          if (container.securityContext?.allowPrivilegeEscalation !== false) problem(`${where}: allowPrivilegeEscalation should be false`);
        }
        checkReferences(container, where, configMaps, problem);
        const role = roleOfArgs(container);
        if (!role) {
          // Only helpers (init containers with their own command) may run SMMF's image without a role.
          if ((image === FULL_IMAGE || image === LIGHT_IMAGE) && !(container.command && pod.initContainers?.includes(container))) {
            problem(`${where}: runs ${image} without a role (args must start with worker, gateway or controller)`);
          }
          continue;
        }
        if (container.command) problem(`${where}: sets command; the image's ENTRYPOINT (node /app/bin/smmf.js) must run, with the role as the first arg`);
        if (image !== IMAGE_OF_ROLE[role]) problem(`${where}: a ${role} should run ${IMAGE_OF_ROLE[role]}, not ${image}`);
        const entry: SmmfContainer = { workload, pod, container, role, where };
        entry.config = loadContainerConfig(entry, configMaps, configRoot, problem);
        smmf.push(entry);
      }
      if (runsSmmf) {
        if (pod.enableServiceLinks !== false) problem(`${name}: enableServiceLinks must be false (Service environment variables could collide with SMMF_* settings)`);
        if (pod.automountServiceAccountToken !== false) problem(`${name}: SMMF needs no Kubernetes API token (automountServiceAccountToken: false)`);
        const sc = pod.securityContext ?? {};
        if (sc.runAsNonRoot !== true || sc.runAsUser !== SMMF_UID || sc.fsGroup !== SMMF_UID) problem(`${name}: should run as non-root uid ${SMMF_UID} with fsGroup ${SMMF_UID} (the image's user)`);
      }
    }
  } finally {
    rmSync(configRoot, { recursive: true, force: true });
  }
  for (const role of ROLES) if (!smmf.some((c) => c.role === role)) problem(`no ${role} container`);

  for (const c of smmf) checkSmmfContainer(c, problem);

  // ---- services ----
  for (const svc of services) {
    const name = `Service/${svc.metadata.name}`;
    const selected = workloads.filter((w) => matchesMap(svc.spec?.selector, podLabels(w)));
    if (selected.length === 0) problem(`${name}: its selector matches no workload`);
    for (const port of svc.spec?.ports ?? []) {
      for (const w of selected) {
        const target = port.targetPort ?? port.port;
        if (containerPort(w.spec.template.spec, target) === undefined) problem(`${name}: targetPort ${target} is no container port of ${w.kind}/${w.metadata.name}`);
      }
    }
  }
  // StatefulSets (workers, etcd): the headless Service their pods' stable names live under.
  for (const sts of byKind("StatefulSet")) {
    const svc = services.find((s) => s.metadata.name === sts.spec?.serviceName);
    if (!svc) {
      problem(`StatefulSet/${sts.metadata.name}: serviceName ${sts.spec?.serviceName} is no Service`);
      continue;
    }
    if (svc.spec?.clusterIP !== "None") problem(`Service/${svc.metadata.name}: must be headless (clusterIP: None) to give ${sts.metadata.name}'s pods stable names`);
    if (svc.spec?.publishNotReadyAddresses !== true) problem(`Service/${svc.metadata.name}: publishNotReadyAddresses must be true (pods are reached by name before they are ready)`);
    if (!matchesMap(svc.spec?.selector, podLabels(sts))) problem(`Service/${svc.metadata.name}: does not select ${sts.metadata.name}'s pods`);
  }

  checkEtcd(objects, smmf, ha, problem);
  checkNetworkPolicies(objects, smmf, problem);
  checkAutoscaler(objects, problem);
  checkDisruptionBudgets(objects, problem);
  checkServiceMonitors(objects, smmf, services, problem);

  // ---- sizes ----
  const replicas = (kind: string, role: string) => workloads.find((w) => w.kind === kind && podLabels(w)["app.kubernetes.io/component"] === role)?.spec?.replicas;
  const hpa = byKind("HorizontalPodAutoscaler")[0];
  if (ha) {
    if (replicas("StatefulSet", "etcd") !== 3) problem(`${overlay}: etcd should have 3 members, has ${replicas("StatefulSet", "etcd")}`);
    if (!(replicas("Deployment", "controller") >= 2)) problem(`${overlay}: at least 2 controllers expected`);
    if (!(replicas("StatefulSet", "worker") >= 2)) problem(`${overlay}: at least 2 workers expected`);
    if (!(hpa?.spec?.minReplicas >= 2)) problem(`${overlay}: at least 2 gateways expected (the autoscaler's minReplicas)`);
  } else if (overlay === "single-node") {
    if (replicas("StatefulSet", "etcd") !== 1) problem(`single-node: one etcd member expected`);
    if (replicas("Deployment", "controller") !== 1 || replicas("StatefulSet", "worker") !== 1) problem(`single-node: one controller and one worker expected`);
    if (hpa?.spec?.minReplicas !== 1) problem(`single-node: one gateway expected (the autoscaler's minReplicas)`);
  }

  // ---- secrets are documented ----
  const readme = readFileSync(join(k8sDir, "README.md"), "utf8");
  for (const secret of referencedSecrets(objects)) {
    if (!readme.includes(secret)) problem(`Secret ${secret} is referenced but deploy/k8s/README.md does not say how to create it`);
  }
  return problems;
}

/**
 * Every `$(VAR)` in a container's env values names a variable listed before it, and every one in its command
 * and args a variable it has (Kubernetes leaves other references as they are, silently).
 */
function checkReferences(container: Obj, where: string, configMaps: Map<string, Obj>, problem: (m: string) => void): void {
  const defined: string[] = [];
  for (const from of container.envFrom ?? []) {
    const cm = from.configMapRef && configMaps.get(from.configMapRef.name);
    for (const key of Object.keys(cm?.data ?? {})) defined.push(`${from.prefix ?? ""}${key}`);
  }
  for (const e of container.env ?? []) {
    for (const ref of references(String(e.value ?? ""))) {
      if (!defined.includes(ref)) problem(`${where}: env ${e.name} refers to $(${ref}), which is not defined before it (Kubernetes would leave it as is)`);
    }
    defined.push(e.name);
  }
  for (const s of [...(container.command ?? []), ...(container.args ?? [])]) {
    for (const ref of references(String(s))) if (!defined.includes(ref)) problem(`${where}: '${s}' refers to $(${ref}), which is no environment variable of the container`);
  }
}

/** A container port of a pod spec by name or number. */
function containerPort(pod: Obj, port: string | number): number | undefined {
  for (const c of pod?.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name === port || p.containerPort === port) return p.containerPort;
  }
  return undefined;
}

/** The flags of an SMMF command line: [flag, value] pairs (value undefined for a switch). */
function flagsOf(args: string[], where: string, problem: (m: string) => void): Array<[string, string | undefined]> {
  const out: Array<[string, string | undefined]> = [];
  for (let i = 1; i < args.length; i++) {
    const arg = String(args[i]);
    if (!arg.startsWith("--")) {
      problem(`${where}: unexpected argument '${arg}'`);
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const row = settingOfFlag(flag);
    if (!row) {
      problem(`${where}: --${flag} is no SMMF flag (src/config/settings.ts)`);
      continue;
    }
    if (row.parse.arg === "switch") out.push([flag, undefined]);
    else if (eq >= 0) out.push([flag, arg.slice(eq + 1)]);
    else out.push([flag, args[++i]]);
  }
  return out;
}

/** Sample values for the variables Kubernetes fills in (downward API), to load a config as the pod would. */
function expand(value: string, env: Record<string, string>): string {
  return value.replace(/(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
}

/**
 * Loads a container's settings with the CLI's own parser and loader: its args, its SMMF_* variables (from
 * env and envFrom ConfigMaps) and its config file (--config, from a ConfigMap volume, written to a scratch
 * folder). Reports flags and variables that are not settings of its role, and anything the loader refuses.
 */
function loadContainerConfig(c: SmmfContainer, configMaps: Map<string, Obj>, scratch: string, problem: (m: string) => void): SmmfConfig | undefined {
  const { container, role, where, workload } = c;
  const args: string[] = (container.args ?? []).map(String);
  for (const [flag] of flagsOf(args, where, problem)) {
    const row = settingOfFlag(flag)!;
    if (!appliesTo(row, role)) problem(`${where}: --${flag} is not a setting of smmf ${role} (section ${row.section})`);
  }
  // The environment as the pod sees it.
  const samples: Record<string, string> = { POD_NAME: `${workload.metadata.name}-0`, POD_NAMESPACE: workload.metadata.namespace ?? "default" };
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    if (from.secretRef) continue;
    const cm = configMaps.get(from.configMapRef?.name);
    if (!cm) {
      if (!from.configMapRef?.optional) problem(`${where}: envFrom ConfigMap ${from.configMapRef?.name} is not in the manifests`);
      continue;
    }
    for (const [k, v] of Object.entries(cm.data ?? {})) env[`${from.prefix ?? ""}${k}`] = String(v);
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = expand(String(e.value), { ...samples, ...env });
    else if (e.valueFrom?.fieldRef) env[e.name] = samples[e.name] ?? "sample";
    else if (e.valueFrom?.configMapKeyRef) env[e.name] = String(configMaps.get(e.valueFrom.configMapKeyRef.name)?.data?.[e.valueFrom.configMapKeyRef.key] ?? "");
    else env[e.name] = "secret-value-0123456789";
  }
  const smmfEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("SMMF_")) continue;
    const row = settingOfEnv(name);
    if (!row) problem(`${where}: ${name} is no SMMF environment variable (src/config/settings.ts)`);
    else if (!appliesTo(row, role)) problem(`${where}: ${name} is not a setting of smmf ${role} (section ${row.section})`);
    else smmfEnv[name] = value;
  }
  // Config-file ConfigMaps, written where the container would see them (under the scratch folder).
  const dir = mkdtempSync(join(scratch, "pod-"));
  for (const mount of container.volumeMounts ?? []) {
    const volume = (c.pod.volumes ?? []).find((v: Obj) => v.name === mount.name);
    const cm = volume?.configMap && configMaps.get(volume.configMap.name);
    if (volume?.configMap && !cm) {
      if (!volume.configMap.optional) problem(`${where}: ConfigMap ${volume.configMap.name} (volume ${volume.name}) is not in the manifests`);
      continue;
    }
    if (!cm) continue;
    for (const [key, value] of Object.entries(cm.data ?? {})) {
      const file = join(dir, mount.mountPath, key);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, String(value));
    }
  }
  try {
    const { flags } = parseSettingsArgs(args.slice(1).map((a) => expand(a, { ...samples, ...env })));
    if (flags.config !== undefined) {
      const file = join(dir, flags.config);
      if (!existsSync(file)) problem(`${where}: --config ${flags.config} is in no ConfigMap volume of the container`);
      else flags.config = file;
    }
    // A folder with no smmf.config.json of its own, so that none is read by default.
    return loadConfig(flags, smmfEnv, dir);
  } catch (err) {
    problem(`${where}: smmf ${role} refuses its settings: ${(err as Error).message}`);
    return undefined;
  }
}

/** The mount a path lies under, if any. */
function mountOf(container: Obj, path: string): Obj | undefined {
  return (container.volumeMounts ?? [])
    .filter((m: Obj) => path === m.mountPath || path.startsWith(`${m.mountPath.replace(/\/$/, "")}/`))
    .sort((a: Obj, b: Obj) => b.mountPath.length - a.mountPath.length)[0];
}

function checkSmmfContainer(c: SmmfContainer, problem: (m: string) => void): void {
  const { container, pod, role, where, config, workload } = c;
  if (!config) return;
  const listenPort = role === "worker" ? config.workerPort : config.port;
  const listenHost = role === "worker" ? config.workerHost : config.host;
  if (listenHost !== "0.0.0.0" && listenHost !== "::") problem(`${where}: listens on ${listenHost}; it must listen beyond loopback (0.0.0.0) to be reached and probed`);
  if (!listenPort) problem(`${where}: needs a fixed port (--${role === "worker" ? "worker-port" : "port"})`);
  const ports = (container.ports ?? []).map((p: Obj) => p.containerPort);
  if (!ports.includes(listenPort)) problem(`${where}: listens on port ${listenPort}, but declares container ports ${ports.join(", ") || "none"}`);

  // Probes: liveness /healthz, readiness /readyz, on the listen port, HTTPS when the listener serves TLS.
  const scheme = config.tlsCert ? "HTTPS" : "HTTP";
  for (const [probe, path] of [
    ["livenessProbe", "/healthz"],
    ["readinessProbe", "/readyz"],
  ] as const) {
    const get = container[probe]?.httpGet;
    if (!get) {
      problem(`${where}: no ${probe} (httpGet ${path})`);
      continue;
    }
    if (get.path !== path) problem(`${where}: ${probe} asks ${get.path}; SMMF answers ${path}`);
    if (containerPort(pod, get.port) !== listenPort) problem(`${where}: ${probe} port ${get.port} is not the listen port ${listenPort}`);
    if ((get.scheme ?? "HTTP") !== scheme) problem(`${where}: ${probe} uses ${get.scheme ?? "HTTP"}, the listener serves ${scheme}`);
    if (!SOURCE.includes(`"${path}"`)) problem(`${where}: ${path} is no path SMMF serves`);
  }

  // Termination: Kubernetes' SIGKILL comes after the preStop pause and the grace.
  const preStop = container.lifecycle?.preStop;
  let preStopMs = 0;
  if (preStop?.exec) {
    const m = /setTimeout\([^,]*,\s*(\d+)\s*\)/.exec((preStop.exec.command ?? []).join(" "));
    if (!m) problem(`${where}: a preStop command whose length is unknown`);
    else preStopMs = Number(m[1]);
  } else if (preStop?.sleep) preStopMs = preStop.sleep.seconds * 1000;
  const killAfterMs = (pod.terminationGracePeriodSeconds ?? 30) * 1000;
  if (killAfterMs < preStopMs + config.shutdownGraceMs + TERMINATION_MARGIN_MS) {
    problem(
      `${where}: terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds ?? "30 (default)"} does not outlast the preStop pause (${preStopMs} ms) and --shutdown-grace-ms ${config.shutdownGraceMs} by ${TERMINATION_MARGIN_MS} ms`,
    );
  }

  // Files and folders come from volumes; the data folder is writable.
  if (!config.clusterSecretFile) problem(`${where}: no --cluster-secret-file (workers refuse to listen beyond loopback without the cluster credential, and the others cannot call them)`);
  const files: Array<[string, string]> = [
    ["--cluster-secret-file", config.clusterSecretFile],
    ["--tls-cert", config.tlsCert],
    ["--tls-key", config.tlsKey],
    ["--tls-ca", config.tlsCa],
    ["--etcd-ca", config.etcdCa],
    ["--etcd-cert", config.etcdCert],
    ["--etcd-key", config.etcdKey],
    ["--etcd-password-file", config.etcdPasswordFile],
  ];
  for (const [flag, file] of files) {
    if (!file) continue;
    const mount = mountOf(container, file);
    const volume = mount && (pod.volumes ?? []).find((v: Obj) => v.name === mount.name);
    if (!volume?.secret) problem(`${where}: ${flag} ${file} is in no Secret volume`);
    else if (volume.secret.items === undefined && file.slice(mount.mountPath.replace(/\/$/, "").length + 1).includes("/")) problem(`${where}: ${flag} ${file} is not a key of Secret ${volume.secret.secretName}`);
  }
  const dataMount = mountOf(container, config.dataDir);
  if (!dataMount || dataMount.readOnly) problem(`${where}: --data-dir ${config.dataDir} must be a writable volume`);
  if (!mountOf(container, "/tmp")) problem(`${where}: /tmp must be a volume (the root file system is read-only)`);

  if (role === "worker") {
    const modelMount = mountOf(container, config.modelDir);
    const claim = (workload.spec?.volumeClaimTemplates ?? []).find((t: Obj) => t.metadata?.name === modelMount?.name);
    if (!modelMount) problem(`${where}: --model-dir ${config.modelDir} is no volume`);
    else if (workload.kind !== "StatefulSet" || !claim) problem(`${where}: the model folder should be a volume of its own (a StatefulSet's volumeClaimTemplates)`);
    // Where gateways and controllers reach it: its stable name under the StatefulSet's headless Service.
    const advertised = (container.env ?? []).find((e: Obj) => e.name === "SMMF_ADVERTISE")?.value ?? flagsOf(container.args, where, () => {}).find(([f]) => f === "advertise")?.[1];
    const m = /^(https?):\/\/([^/:]+):(\d+)$/.exec(String(advertised ?? ""));
    if (!m) problem(`${where}: advertises '${advertised}', not scheme://host:port`);
    else {
      const [, urlScheme, host, port] = m;
      if (Number(port) !== listenPort) problem(`${where}: advertises port ${port}, listens on ${listenPort}`);
      if (urlScheme !== (config.tlsCert ? "https" : "http")) problem(`${where}: advertises ${urlScheme} while its listener ${config.tlsCert ? "serves TLS" : "is cleartext"}`);
      const expected = `$(POD_NAME).${workload.spec?.serviceName}.`;
      if (!host.startsWith(expected)) problem(`${where}: advertises host ${host}; expected its pod's name under the headless Service, ${expected}...`);
    }
    // Memory: what it offers to instances fits in its limit beside Node; threads are requested.
    const limitMib = mib(container.resources?.limits?.memory);
    const requestMib = mib(container.resources?.requests?.memory);
    if (!(config.maxMemoryMb > 0)) problem(`${where}: set --max-memory-mb (a worker cannot see its container's memory limit and would offer the node's)`);
    else if (!(config.maxMemoryMb + NODE_BASELINE_MIB <= limitMib)) problem(`${where}: --max-memory-mb ${config.maxMemoryMb} + ${NODE_BASELINE_MIB} MiB for Node exceeds the memory limit ${container.resources?.limits?.memory}`);
    if (!(requestMib <= limitMib)) problem(`${where}: memory request ${container.resources?.requests?.memory} is over the limit ${container.resources?.limits?.memory}`);
    if (!(config.threads >= 1)) problem(`${where}: set --threads (the default follows the node's cores, not the pod's CPU request)`);
    else if (!(cores(container.resources?.requests?.cpu) >= config.threads)) problem(`${where}: requests ${container.resources?.requests?.cpu} CPU for ${config.threads} threads`);
  } else {
    if (!(mib(container.resources?.limits?.memory) > 0)) problem(`${where}: no memory limit`);
  }
}

function checkEtcd(objects: Obj[], smmf: SmmfContainer[], ha: boolean, problem: (m: string) => void): void {
  const etcd = objects.find((o) => o?.kind === "StatefulSet" && o.spec?.template?.spec?.containers?.some((c: Obj) => ETCD_IMAGE.test(c.image)));
  if (!etcd) {
    // An external etcd: nothing to check against.
    if (ha) problem("an HA overlay without etcd");
    return;
  }
  const name = etcd.metadata.name;
  const svc = etcd.spec.serviceName;
  const replicas = etcd.spec.replicas ?? 1;
  if (etcd.spec.podManagementPolicy !== "Parallel") problem(`StatefulSet/${name}: podManagementPolicy must be Parallel (members wait for each other's quorum)`);
  const container = etcd.spec.template.spec.containers.find((c: Obj) => ETCD_IMAGE.test(c.image));
  const initial = (container.env ?? []).find((e: Obj) => e.name === "ETCD_INITIAL_CLUSTER")?.value ?? "";
  const expected = Array.from({ length: replicas }, (_, i) => `${name}-${i}=http://${name}-${i}.${svc}:2380`).join(",");
  if (initial !== expected) problem(`StatefulSet/${name}: ETCD_INITIAL_CLUSTER is '${initial}', expected '${expected}' for ${replicas} members`);
  const endpoints = Array.from({ length: replicas }, (_, i) => `http://${name}-${i}.${svc}:2379`);
  for (const c of smmf) {
    const given = (c.config?.etcd ?? "").split(",").filter(Boolean);
    if (given.join(",") !== endpoints.join(",")) problem(`${c.where}: etcd endpoints '${given.join(",")}', expected every member: '${endpoints.join(",")}'`);
  }
}

/** The workloads a NetworkPolicy peer's podSelector matches (in the policy's own namespace). */
function peerWorkloads(peer: Obj, workloads: Obj[]): Obj[] {
  return workloads.filter((w) => matches(peer.podSelector, podLabels(w)));
}
const roleOf = (w: Obj): string | undefined => podLabels(w)["app.kubernetes.io/component"];
const isPrometheusPeer = (peer: Obj) =>
  peer.namespaceSelector !== undefined && !peer.ipBlock && peer.podSelector?.matchLabels?.["app.kubernetes.io/name"] === "prometheus";

function checkNetworkPolicies(objects: Obj[], smmf: SmmfContainer[], problem: (m: string) => void): void {
  const policies = objects.filter((o) => o?.kind === "NetworkPolicy");
  const workloads = objects.filter(isWorkload);
  const portOf = (role: Role) => {
    const c = smmf.find((x) => x.role === role)?.config;
    return role === "worker" ? c?.workerPort : c?.port;
  };
  const selecting = (w: Obj) => policies.filter((p) => matches(p.spec?.podSelector, podLabels(w)));

  // Workers: only gateways and controllers (and Prometheus, where monitoring is on) reach the worker port.
  const workers = workloads.filter((w) => roleOf(w) === "worker");
  const admitted = new Set<string>();
  for (const w of workers) {
    const ps = selecting(w);
    if (ps.length === 0) problem(`${w.kind}/${w.metadata.name}: no NetworkPolicy selects the workers`);
    for (const p of ps) {
      const name = `NetworkPolicy/${p.metadata.name}`;
      if (!(p.spec.policyTypes ?? []).includes("Ingress")) problem(`${name}: must isolate ingress (policyTypes: [Ingress])`);
      for (const rule of p.spec.ingress ?? []) {
        if (!rule.from || rule.from.length === 0) problem(`${name}: a rule admits every source to the workers`);
        for (const peer of rule.from ?? []) {
          if (isPrometheusPeer(peer)) continue;
          if (peer.ipBlock || peer.namespaceSelector) {
            problem(`${name}: admits ${JSON.stringify(peer)} to the workers; only gateways and controllers may reach them`);
            continue;
          }
          const peers = peerWorkloads(peer, workloads);
          if (peers.length === 0) problem(`${name}: peer ${JSON.stringify(peer)} matches no SMMF pod`);
          for (const pw of peers) {
            const role = roleOf(pw) ?? "?";
            if (role !== "gateway" && role !== "controller") problem(`${name}: admits ${pw.kind}/${pw.metadata.name} (${role}) to the workers; only gateways and controllers may reach them`);
            else admitted.add(role);
          }
        }
        const port = portOf("worker");
        for (const pp of rule.ports ?? []) if (pp.port !== port && containerPort(w.spec.template.spec, pp.port) !== port) problem(`${name}: opens port ${pp.port} on workers, which listen on ${port}`);
        if (!rule.ports) problem(`${name}: a rule opens every port of the workers`);
      }
    }
  }
  for (const role of ["gateway", "controller"]) if (!admitted.has(role)) problem(`no NetworkPolicy lets ${role}s reach the workers`);

  // etcd: its client port only from SMMF's pods (same namespace), its peer port from its members.
  for (const w of workloads.filter((x) => roleOf(x) === "etcd")) {
    const ps = selecting(w);
    if (ps.length === 0) problem(`${w.kind}/${w.metadata.name}: no NetworkPolicy selects etcd`);
    for (const p of ps) {
      for (const rule of p.spec.ingress ?? []) {
        if (!rule.from || rule.from.length === 0) problem(`NetworkPolicy/${p.metadata.name}: a rule admits every source to etcd`);
        for (const peer of rule.from ?? []) {
          const labels = peer.podSelector?.matchLabels ?? {};
          const smmfOnly = labels["app.kubernetes.io/part-of"] === "smmf" || labels["app.kubernetes.io/name"] === "smmf" || labels["app.kubernetes.io/name"] === "etcd";
          if (peer.ipBlock || peer.namespaceSelector || !smmfOnly) problem(`NetworkPolicy/${p.metadata.name}: admits ${JSON.stringify(peer)} to etcd; only SMMF's pods may reach it`);
        }
      }
    }
  }

  // Every port a policy opens is one its pods listen on.
  for (const p of policies) {
    const selected = workloads.filter((w) => matches(p.spec?.podSelector, podLabels(w)));
    if (selected.length === 0) problem(`NetworkPolicy/${p.metadata.name}: selects no pod of the manifests`);
    for (const rule of p.spec?.ingress ?? []) {
      for (const pp of rule.ports ?? []) {
        for (const w of selected) if (containerPort(w.spec.template.spec, pp.port) === undefined) problem(`NetworkPolicy/${p.metadata.name}: opens port ${pp.port}, on which ${w.kind}/${w.metadata.name} does not listen`);
      }
    }
  }

  // Gateways: their port from anywhere.
  for (const w of workloads.filter((x) => roleOf(x) === "gateway")) {
    const open = selecting(w).some((p) => (p.spec.ingress ?? []).some((r: Obj) => (!r.from || r.from.length === 0) && (r.ports ?? []).some((pp: Obj) => pp.port === portOf("gateway"))));
    if (!open) problem(`${w.kind}/${w.metadata.name}: no NetworkPolicy lets clients reach the gateway port ${portOf("gateway")}`);
  }
}

function checkAutoscaler(objects: Obj[], problem: (m: string) => void): void {
  const hpas = objects.filter((o) => o?.kind === "HorizontalPodAutoscaler");
  if (hpas.length === 0) problem("no HorizontalPodAutoscaler for the gateways");
  for (const hpa of hpas) {
    const name = `HorizontalPodAutoscaler/${hpa.metadata.name}`;
    const ref = hpa.spec.scaleTargetRef;
    const target = objects.find((o) => o?.kind === ref.kind && o.metadata?.name === ref.name);
    if (!target) problem(`${name}: scales ${ref.kind}/${ref.name}, which is not in the manifests`);
    else {
      if (roleOf(target) !== "gateway") problem(`${name}: scales ${ref.kind}/${ref.name}, not the gateways`);
      if (target.spec.replicas !== undefined) problem(`${name}: ${ref.kind}/${ref.name} sets replicas, which every apply would reset under the autoscaler`);
    }
    if (!(hpa.spec.minReplicas <= hpa.spec.maxReplicas)) problem(`${name}: minReplicas over maxReplicas`);
    for (const metric of hpa.spec.metrics ?? []) {
      if (metric.type !== "Pods") problem(`${name}: a ${metric.type} metric; the gateways scale on an SMMF metric per pod (type Pods)`);
      const metricName = metric.pods?.metric?.name;
      if (!metricName || !/^smmf_gateway_/.test(metricName) || !SOURCE.includes(`"${metricName}"`)) problem(`${name}: metric ${metricName} is no gateway metric SMMF exports (src/)`);
    }
  }
}

function checkDisruptionBudgets(objects: Obj[], problem: (m: string) => void): void {
  const pdbs = objects.filter((o) => o?.kind === "PodDisruptionBudget");
  for (const w of objects.filter(isWorkload)) {
    const covering = pdbs.filter((p) => matches(p.spec?.selector, podLabels(w)));
    if (covering.length !== 1) problem(`${w.kind}/${w.metadata.name}: ${covering.length} PodDisruptionBudgets select it (expected 1)`);
    // maxUnavailable lets a drain proceed whatever the replicas; minAvailable = replicas would block it forever.
    for (const p of covering) if (p.spec.minAvailable !== undefined && p.spec.minAvailable >= (w.spec.replicas ?? 1)) problem(`PodDisruptionBudget/${p.metadata.name}: minAvailable ${p.spec.minAvailable} blocks every voluntary disruption`);
  }
}

function checkServiceMonitors(objects: Obj[], smmf: SmmfContainer[], services: Obj[], problem: (m: string) => void): void {
  for (const sm of objects.filter((o) => o?.kind === "ServiceMonitor")) {
    const name = `ServiceMonitor/${sm.metadata.name}`;
    const selected = services.filter((s) => matches(sm.spec.selector, s.metadata.labels));
    for (const role of ROLES) if (!selected.some((s) => matchesMap(s.spec.selector, { "app.kubernetes.io/name": "smmf", "app.kubernetes.io/component": role }))) problem(`${name}: scrapes no ${role} Service`);
    for (const endpoint of sm.spec.endpoints ?? []) {
      if (endpoint.path !== "/metrics" || !SOURCE.includes('"/metrics"')) problem(`${name}: scrapes ${endpoint.path}; SMMF serves /metrics`);
      for (const s of selected) if (!(s.spec.ports ?? []).some((p: Obj) => p.name === endpoint.port)) problem(`${name}: port ${endpoint.port} is no port of Service/${s.metadata.name}`);
      const tls = smmf.some((c) => c.config?.tlsCert);
      if ((endpoint.scheme ?? "http") !== (tls ? "https" : "http")) problem(`${name}: scrapes over ${endpoint.scheme ?? "http"} while the listeners ${tls ? "serve TLS" : "are cleartext"}`);
      // Gateways' and controllers' /metrics need a reader key beyond loopback.
      if (!endpoint.authorization?.credentials?.name && !endpoint.bearerTokenSecret?.name) problem(`${name}: no API key for gateways' and controllers' /metrics (a reader key)`);
    }
  }
}

/** The Secrets the manifests read. */
function referencedSecrets(objects: Obj[]): Set<string> {
  const names = new Set<string>();
  const visit = (value: unknown, key: string | undefined) => {
    if (Array.isArray(value)) return value.forEach((v) => visit(v, key));
    if (value === null || typeof value !== "object") return;
    const o = value as Obj;
    if (key === "secret" && typeof o.secretName === "string") names.add(o.secretName);
    if (key === "secret" && typeof o.name === "string") names.add(o.name); // ServiceMonitor tlsConfig
    if ((key === "secretKeyRef" || key === "secretRef" || key === "credentials") && typeof o.name === "string") names.add(o.name);
    for (const [k, v] of Object.entries(o)) visit(v, k);
  };
  for (const obj of objects) visit(obj, undefined);
  return names;
}

// ---- the tests ----------------------------------------------------------------------------------------------

const overlays = readdirSync(overlaysDir).filter((d) => existsSync(join(overlaysDir, d, "kustomization.yaml")));
const rendered = new Map<string, Obj[]>();
let renderFailure: unknown;
/** An overlay's objects; throws why rendering failed (kubectl missing: how to install it). Never skipped. */
function objectsOf(overlay: string): Obj[] {
  if (renderFailure) throw renderFailure;
  const objects = rendered.get(overlay);
  if (!objects) throw new Error(`overlay ${overlay} was not rendered`);
  return objects;
}

describe("deploy/k8s", () => {
  beforeAll(() => {
    try {
      kubectl(["version", "--client"]);
      for (const overlay of overlays) rendered.set(overlay, render(join(overlaysDir, overlay)));
    } catch (err) {
      renderFailure = err; // reported by every test, which fails
    }
  });
  afterAll(() => rendered.clear());

  it("has the single-node and HA overlays, rendered by kubectl kustomize", () => {
    if (renderFailure) throw renderFailure;
    expect(overlays).toEqual(expect.arrayContaining(["single-node", "ha"]));
  });

  describe.each(overlays)("overlay %s", (overlay) => {
    it("renders, validates against the Kubernetes schemas and agrees with SMMF's CLI", () => {
      const objects = objectsOf(overlay);
      expect(objects.length).toBeGreaterThan(10);
      expect(checkManifests(objects, overlay)).toEqual([]);
    });
  });

  it("HA runs ServiceMonitor and Prometheus' NetworkPolicy; single-node needs no Prometheus Operator", () => {
    expect(objectsOf("ha").some((o) => o.kind === "ServiceMonitor")).toBe(true);
    expect(objectsOf("single-node").some((o) => o.kind === "ServiceMonitor")).toBe(false);
  });

  // The checks catch what they are for: each break of a good rendering is reported.
  describe("reports broken manifests", () => {
    const find = (objects: Obj[], kind: string, role: string) => objects.find((o) => o.kind === kind && (podLabels(o)["app.kubernetes.io/component"] === role || o.metadata?.name === `smmf-${role}`));
    const container = (objects: Obj[], kind: string, role: string) => find(objects, kind, role).spec.template.spec.containers[0];
    const breaks: Array<[string, string, (objects: Obj[]) => void, RegExp]> = [
      ["a misspelt flag", "single-node", (o) => { const c = container(o, "StatefulSet", "worker"); c.args = c.args.map((a: string) => a.replace("--worker-port", "--worker-prot")); }, /--worker-prot is no SMMF flag/],
      ["a flag of another role", "single-node", (o) => container(o, "Deployment", "gateway").args.push("--worker-port=7001"), /--worker-port is not a setting of smmf gateway/],
      ["a value the CLI refuses", "single-node", (o) => container(o, "Deployment", "gateway").args.push("--policy=fastest"), /refuses its settings/],
      ["an unknown SMMF_ variable", "single-node", (o) => container(o, "Deployment", "controller").env.push({ name: "SMMF_CONTROLER_ID", value: "x" }), /SMMF_CONTROLER_ID is no SMMF environment variable/],
      ["a wrong readiness path", "single-node", (o) => { container(o, "Deployment", "gateway").readinessProbe.httpGet.path = "/ready"; }, /readinessProbe asks \/ready; SMMF answers \/readyz/],
      ["a liveness probe on another port", "single-node", (o) => { container(o, "StatefulSet", "worker").livenessProbe.httpGet.port = 8000; }, /livenessProbe port 8000 is not the listen port 7001/],
      ["a port that does not match the flag", "single-node", (o) => { const c = container(o, "Deployment", "controller"); c.args = c.args.map((a: string) => a.replace("--port=8100", "--port=8200")); }, /listens on port 8200/],
      ["a termination grace shorter than the drain", "single-node", (o) => { find(o, "StatefulSet", "worker").spec.template.spec.terminationGracePeriodSeconds = 30; }, /terminationGracePeriodSeconds 30 does not outlast/],
      ["a worker NetworkPolicy open to all", "ha", (o) => { o.find((x) => x.kind === "NetworkPolicy" && x.metadata.name === "smmf-worker").spec.ingress.push({ ports: [{ port: 7001 }] }); }, /admits every source to the workers/],
      ["a worker NetworkPolicy admitting etcd", "ha", (o) => { o.find((x) => x.kind === "NetworkPolicy" && x.metadata.name === "smmf-worker").spec.ingress[0].from.push({ podSelector: { matchLabels: { "app.kubernetes.io/component": "etcd" } } }); }, /admits StatefulSet\/smmf-etcd \(etcd\) to the workers/],
      ["an autoscaler metric SMMF does not export", "ha", (o) => { o.find((x) => x.kind === "HorizontalPodAutoscaler").spec.metrics[0].pods.metric.name = "smmf_gateway_requests_inflight"; }, /metric smmf_gateway_requests_inflight is no gateway metric/],
      ["an unknown field", "single-node", (o) => { const c = container(o, "Deployment", "gateway"); c.readinesProbe = c.readinessProbe; }, /unknown field .*readinesProbe/],
      ["a schema violation", "single-node", (o) => { container(o, "Deployment", "gateway").ports[0].containerPort = "8000"; }, /containerPort must be integer/],
      ["another image", "single-node", (o) => { container(o, "Deployment", "gateway").image = "smmf/smmf:latest"; }, /image smmf\/smmf:latest is none of/],
      ["a variable used before it is defined", "ha-tls", (o) => { const env = container(o, "StatefulSet", "worker").env; env.unshift(env.splice(env.findIndex((e: Obj) => e.name === "SMMF_ADVERTISE"), 1)[0]); }, /SMMF_ADVERTISE refers to \$\(POD_NAME\), which is not defined before it/],
      ["an advertised scheme that is not the listener's", "ha-tls", (o) => { const e = container(o, "StatefulSet", "worker").env.find((x: Obj) => x.name === "SMMF_ADVERTISE"); e.value = e.value.replace("https:", "http:"); }, /advertises http while its listener serves TLS/],
      ["Service links left on", "single-node", (o) => { delete find(o, "Deployment", "controller").spec.template.spec.enableServiceLinks; }, /enableServiceLinks must be false/],
      ["an etcd member missing from the endpoints", "ha", (o) => { o.find((x) => x.kind === "ConfigMap" && x.metadata.name.startsWith("smmf-env")).data.SMMF_ETCD = "http://smmf-etcd-0.smmf-etcd:2379"; }, /expected every member/],
      ["an undocumented Secret", "single-node", (o) => { find(o, "Deployment", "gateway").spec.template.spec.volumes.find((v: Obj) => v.secret).secret.secretName = "smmf-undocumented"; }, /Secret smmf-undocumented is referenced but deploy\/k8s\/README.md/],
    ];
    it.each(breaks)("%s", (_what, overlay, mutate, expected) => {
      const objects = structuredClone(objectsOf(overlay));
      mutate(objects);
      const problems = checkManifests(objects, overlay);
      expect(problems.some((p) => expected.test(p)), `expected a problem matching ${expected}, got:\n${problems.join("\n")}`).toBe(true);
    });
  });
});
