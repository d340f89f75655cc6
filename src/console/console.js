// The SMMF console: plain ES module, no build step, no requests but to the server that serves it.
const KEY = "smmf-api-key";
const $ = (id) => document.getElementById(id);
let role = null;
let timer;
/** Replica counts typed but not applied yet, by model: a refresh keeps them. */
const edits = new Map();

function headers() {
  const key = sessionStorage.getItem(KEY);
  return key ? { authorization: `Bearer ${key}` } : {};
}

async function api(method, path, body) {
  const res = await fetch(path, { method, headers: { ...headers(), ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(json.error?.message ?? `${method} ${path}: HTTP ${res.status}`), { status: res.status });
  return json;
}

/** Reads a server-sent event stream (a fetch Response), calling `onData` with each event's data. */
async function readSse(res, onData) {
  if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error?.message ?? `HTTP ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const lines = buffer.slice(0, end).split("\n").filter((l) => l.startsWith("data:"));
      buffer = buffer.slice(end + 2);
      if (lines.length > 0) onData(lines.map((l) => l.slice(5).trim()).join("\n"));
    }
  }
}

/** A row's header cell (its first: what the row is about). */
function headerCell(row, text) {
  const th = document.createElement("th");
  th.scope = "row";
  th.textContent = text;
  row.append(th);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.append(td);
  return td;
}

const PAGES = ["overview", "instances", "requests", "playground", "events"];
/** Whether this server keeps a request log and serves models (a gateway), or only operates them (a controller). */
let gateway = false;

function show(section) {
  for (const id of ["sign-in", ...PAGES]) $(id).hidden = id !== section;
  $("nav").hidden = section === "sign-in";
  $("sign-out").hidden = section === "sign-in" || !sessionStorage.getItem(KEY);
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === `#${section}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (section === "requests") loadRequests();
  if (section === "playground") loadModels();
  if (section === "overview") refreshTraffic();
}

/** The page the address names (#requests, ...), or the overview. */
function route() {
  const page = location.hash.slice(1);
  const gatewayOnly = page === "requests" || page === "playground";
  show(PAGES.includes(page) && (!gatewayOnly || gateway) ? page : "overview");
}

// ---- Starting and updating a model (admin): the fields of `smmf model start`; the server checks them and its
// message is shown as it is.

const FILE_ENGINES = new Set(["llama.cpp", "llama.cpp-server"]);
/** The model the form edits (its spec loaded, submitted as an update); null: it starts a new one. */
let editing = null;

function engineChanged() {
  const file = FILE_ENGINES.has($("start-engine").value);
  $("file-fields").hidden = !file;
  $("upstream-fields").hidden = file;
  $("start-source").required = file;
}

/** "a=b, c=d" as a map; a part that is not KEY=VALUE is refused before anything is sent. */
function pairs(id, what) {
  const out = {};
  for (const part of $(id).value.split(",").map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new Error(`${what}: '${part}' is not KEY=VALUE`);
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

/** A number field: its value, or undefined when left empty (the server's default). */
function count(id) {
  const v = $(id).value.trim();
  return v === "" ? undefined : Number(v);
}

function specOfForm() {
  const engine = $("start-engine").value;
  const spec = { name: $("start-name").value.trim(), engine, replicas: Number($("start-replicas").value), weight: count("start-weight"), placement: pairs("start-placement", "Placement"), labels: pairs("start-labels", "Labels") };
  if (FILE_ENGINES.has(engine)) {
    spec.source = $("start-source").value.trim();
    spec.llamaCpp = { contextSize: count("start-context"), sequences: count("start-sequences"), threads: count("start-threads"), gpuLayers: count("start-gpu-layers"), chatTemplate: $("start-chat-template").value, embeddings: $("start-embeddings").checked, prefixCache: $("start-prefix-cache").checked };
  } else {
    spec.proxy = {
      baseUrl: $("start-base-url").value.trim(),
      upstreamModel: $("start-upstream-model").value.trim(),
      credential: $("start-credential").value.trim(),
      headers: pairs("start-headers", "Headers"),
      maxConcurrency: count("start-max-concurrency"),
      poolSize: count("start-pool-size"),
      connectTimeoutMs: count("start-connect-timeout"),
      readTimeoutMs: count("start-read-timeout"),
      idleTimeoutMs: count("start-idle-timeout"),
      apiVersion: $("start-api-version").value.trim(),
      contextSize: count("start-upstream-context"),
      keepAlive: $("start-keep-alive").checked,
      embeddings: $("start-upstream-embeddings").checked,
    };
  }
  return spec;
}

const joinPairs = (map) => Object.entries(map ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");

/** Loads a model's spec into the form, which then updates it. */
function editModel(model) {
  const spec = model.spec ?? {};
  editing = model.name;
  $("start-title").textContent = `Update ${model.name}`;
  $("start-submit").textContent = "Update";
  $("start-cancel").hidden = false;
  $("start-name").value = model.name;
  $("start-name").readOnly = true;
  $("start-engine").value = spec.engine || "llama.cpp";
  $("start-replicas").value = String(spec.replicas ?? 1);
  $("start-weight").value = spec.weight ? String(spec.weight) : "";
  $("start-placement").value = joinPairs(spec.placement);
  $("start-labels").value = joinPairs(spec.labels);
  const l = spec.llamaCpp ?? {};
  $("start-source").value = spec.source ?? "";
  $("start-context").value = String(l.contextSize ?? 0);
  $("start-sequences").value = String(l.sequences ?? 4);
  $("start-threads").value = String(l.threads ?? 0);
  $("start-gpu-layers").value = l.gpuLayers === undefined ? "" : String(l.gpuLayers);
  $("start-chat-template").value = l.chatTemplate || "auto";
  $("start-embeddings").checked = l.embeddings ?? false;
  $("start-prefix-cache").checked = l.prefixCache ?? true;
  const p = spec.proxy ?? {};
  $("start-base-url").value = p.baseUrl ?? "";
  $("start-upstream-model").value = p.upstreamModel ?? "";
  $("start-credential").value = p.credential ?? "";
  $("start-headers").value = joinPairs(p.headers);
  for (const [id, v] of [["start-max-concurrency", p.maxConcurrency], ["start-pool-size", p.poolSize], ["start-connect-timeout", p.connectTimeoutMs], ["start-read-timeout", p.readTimeoutMs], ["start-idle-timeout", p.idleTimeoutMs]]) $(id).value = v ? String(v) : "";
  $("start-api-version").value = p.apiVersion ?? "";
  $("start-upstream-context").value = String(p.contextSize ?? 0);
  $("start-keep-alive").checked = p.keepAlive ?? true;
  $("start-upstream-embeddings").checked = p.embeddings ?? false;
  engineChanged();
  $("start-form").scrollIntoView?.();
  $("start-name").focus();
}

function resetForm() {
  editing = null;
  $("start-form").reset();
  $("start-title").textContent = "Start a model";
  $("start-submit").textContent = "Start";
  $("start-cancel").hidden = true;
  $("start-name").readOnly = false;
  engineChanged();
}

async function submitModel(event) {
  event.preventDefault();
  let spec;
  try {
    spec = specOfForm();
  } catch (err) {
    $("status").textContent = err.message;
    return;
  }
  const name = spec.name;
  const ok = editing
    ? await act(`update ${name}`, () => api("PUT", `/api/v1/models/${encodeURIComponent(name)}`, spec))
    : await act(`start ${name}`, () => api("POST", "/api/v1/models", spec));
  if (ok) resetForm();
}

// ---- Requests: the request log, one request's detail, feedback.

let requestCursor = null;
let shown = null;
let rating = 0;

function requestQuery(before) {
  const q = new URLSearchParams({ limit: "25" });
  const model = $("filter-model").value.trim();
  const status = $("filter-status").value.trim();
  if (model) q.set("model", model);
  if (status) q.set("status", status);
  for (const [id, param] of [["filter-since", "since"], ["filter-until", "until"]]) {
    const v = $(id).value;
    if (v) q.set(param, new Date(v).toISOString());
  }
  const key = $("filter-key").value.trim();
  if (key) q.set("key", key);
  if (before) q.set("before", before);
  return `/api/v1/requests?${q}`;
}

async function loadRequests(before) {
  try {
    const page = await api("GET", requestQuery(before));
    const body = $("request-list").tBodies[0];
    if (!before) body.replaceChildren();
    for (const r of page.data) {
      const row = document.createElement("tr");
      row.dataset.request = r.id;
      cell(row, new Date(r.time).toLocaleString());
      cell(row, r.model);
      cell(row, r.endpoint);
      cell(row, String(r.status));
      cell(row, `${r.promptTokens ?? "–"} / ${r.completionTokens ?? "–"}`);
      cell(row, `${Math.round(r.latencyMs)} ms`);
      cell(row, r.feedback ? (r.feedback.score > 0 ? "good" : r.feedback.score < 0 ? "bad" : "neutral") : "");
      const open = document.createElement("button");
      open.type = "button";
      open.textContent = "Details";
      open.setAttribute("aria-label", `Details of ${r.id}`);
      open.addEventListener("click", () => showRequest(r.id));
      cell(row, "").append(open);
      body.append(row);
    }
    requestCursor = page.next;
    $("older").hidden = !page.has_more;
    $("requests-status").textContent = body.rows.length === 0 ? "No requests match." : "";
  } catch (err) {
    $("requests-status").textContent = `Cannot load the request log: ${err.message}`;
  }
}

async function showRequest(id) {
  try {
    const r = await api("GET", `/api/v1/requests/${encodeURIComponent(id)}`);
    shown = r.id;
    rating = r.feedback?.score ?? 0;
    const fields = $("detail-fields");
    fields.replaceChildren();
    const facts = [["Id", r.id], ["Model", r.model], ["Instance", r.instance ?? "–"], ["API key", r.keyName ?? "–"], ["Status", String(r.status)], ["Error", r.errorMessage ?? "–"], ["Prompt tokens", String(r.promptTokens ?? "–")], ["Completion tokens", String(r.completionTokens ?? "–")], ["Latency", `${Math.round(r.latencyMs)} ms`], ["Time to first token", r.ttftMs == null ? "–" : `${Math.round(r.ttftMs)} ms`], ["Trace id", r.traceId ?? "–"]];
    for (const [name, value] of facts) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      fields.append(dt, dd);
    }
    $("detail-prompt").textContent = r.prompt ?? "(not captured)";
    $("detail-output").textContent = r.output ?? "(not captured)";
    $("feedback-comment").value = r.feedback?.comment ?? "";
    $("thumbs-up").setAttribute("aria-pressed", String(rating > 0));
    $("thumbs-down").setAttribute("aria-pressed", String(rating < 0));
    $("feedback-status").textContent = "";
    $("request-detail").hidden = false;
    $("detail-title").focus?.();
  } catch (err) {
    $("requests-status").textContent = `Cannot load ${id}: ${err.message}`;
  }
}

function rate(score) {
  rating = score;
  $("thumbs-up").setAttribute("aria-pressed", String(score > 0));
  $("thumbs-down").setAttribute("aria-pressed", String(score < 0));
}

// ---- Events: the server's event stream, followed while signed in: listed newest first on the Events page, and
// each event refreshes the overview and the instances at once (a rolling restart shows step by step).

let events;
let soon;

function refreshSoon() {
  clearTimeout(soon);
  soon = setTimeout(refresh, 150);
}

async function followEvents() {
  if (events) return;
  const controller = new AbortController();
  events = controller;
  const list = $("event-list");
  $("events-status").textContent = "Following events…";
  try {
    const res = await fetch("/api/v1/events", { headers: headers(), signal: controller.signal });
    await readSse(res, (text) => {
      const e = JSON.parse(text);
      const item = document.createElement("li");
      item.textContent = `${e.time ? new Date(e.time).toLocaleTimeString() : new Date().toLocaleTimeString()} ${(e.type ?? "").replace("EVENT_TYPE_", "").toLowerCase()} ${e.model ?? ""} ${e.instanceId ?? ""} ${e.message ?? ""}`.replace(/\s+/g, " ").trim();
      list.prepend(item);
      while (list.children.length > 200) list.lastChild.remove();
      refreshSoon();
    });
    $("events-status").textContent = "The event stream ended; following again in 5 s.";
  } catch (err) {
    if (err.name === "AbortError") return;
    $("events-status").textContent = `Event stream: ${err.message}; following again in 5 s.`;
  } finally {
    if (events === controller) events = undefined;
  }
  if (!controller.signal.aborted) setTimeout(() => role !== null && !events && followEvents(), 5000);
}

// ---- Playground: a chat, streamed, and the same request as curl.

async function loadModels() {
  try {
    const models = await api("GET", "/v1/models");
    const select = $("chat-model");
    const current = select.value;
    select.replaceChildren(...models.data.map((m) => Object.assign(document.createElement("option"), { value: m.id, textContent: m.id })));
    if (current) select.value = current;
  } catch (err) {
    $("chat-status").textContent = `Cannot list models: ${err.message}`;
  }
}

function curlOf(body) {
  const key = sessionStorage.getItem(KEY) ? " -H 'authorization: Bearer $SMMF_API_KEY'" : "";
  return `curl -N ${location.origin}/v1/chat/completions -H 'content-type: application/json'${key} \\\n  -d '${JSON.stringify(body).replaceAll("'", "'\\''")}'`;
}

async function chat(event) {
  event.preventDefault();
  const body = { model: $("chat-model").value, messages: [{ role: "user", content: $("chat-message").value }], temperature: Number($("chat-temperature").value), top_p: Number($("chat-top-p").value), max_tokens: Number($("chat-max-tokens").value), stream: true };
  if ($("chat-seed").value.trim() !== "") body.seed = Number($("chat-seed").value);
  $("chat-curl").textContent = curlOf(body);
  const output = $("chat-output");
  output.textContent = "";
  $("chat-status").textContent = "Generating…";
  try {
    const res = await fetch("/v1/chat/completions", { method: "POST", headers: { ...headers(), "content-type": "application/json" }, body: JSON.stringify(body) });
    await readSse(res, (data) => {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const text = chunk.choices?.[0]?.delta?.content;
      if (text) output.append(text);
    });
    $("chat-status").textContent = "Done.";
  } catch (err) {
    $("chat-status").textContent = `Failed: ${err.message}`;
  }
}

/** Runs an admin action; its outcome (the server's message as it is) shows in the status line. True when it worked. */
async function act(what, run) {
  let ok = false;
  try {
    await run();
    $("status").textContent = `${what}: done`;
    ok = true;
  } catch (err) {
    $("status").textContent = `${what}: ${err.message}`;
  }
  await refresh();
  return ok;
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function actions(td, model) {
  if (!model.managed) {
    td.textContent = "static (a worker's own configuration)";
    return;
  }
  const path = `/api/v1/models/${encodeURIComponent(model.name)}`;
  const stop = button("Stop", `Stop ${model.name}`, () => {
    if (confirm(`Stop ${model.name}? Its instances are unloaded.`)) act(`stop ${model.name}`, () => api("DELETE", path));
  });
  const restart = button("Restart", `Restart ${model.name}`, () => {
    if (confirm(`Restart ${model.name}? Its instances are replaced one at a time.`)) act(`restart ${model.name}`, () => api("POST", `${path}/restart`));
  });
  const edit = button("Edit", `Edit ${model.name}`, () => editModel(model));
  const label = document.createElement("label");
  label.textContent = "Replicas";
  const input = document.createElement("input");
  input.type = "number";
  input.min = "0";
  input.value = edits.get(model.name) ?? String(model.spec?.replicas ?? model.readyReplicas);
  input.addEventListener("input", () => edits.set(model.name, input.value));
  input.size = 3;
  input.setAttribute("aria-label", `Replicas of ${model.name}`);
  label.append(input);
  const scale = document.createElement("button");
  scale.type = "button";
  scale.textContent = "Scale";
  scale.setAttribute("aria-label", `Scale ${model.name}`);
  scale.addEventListener("click", () => {
    edits.delete(model.name);
    act(`scale ${model.name}`, () => api("POST", `/api/v1/models/${encodeURIComponent(model.name)}/scale`, { replicas: Number(input.value) }));
  });
  td.append(edit, " ", restart, " ", stop, " ", label, scale);
}

const mib = (bytes) => `${Math.round(Number(bytes ?? 0) / 2 ** 20).toLocaleString()} MiB`;
const stateName = (state) => (state ?? "").replace("INSTANCE_STATE_", "").toLowerCase();

/** A model's progress: instances online and of its current generation (a rolling restart replaces the others). */
function modelProgress(model) {
  const instances = model.instances ?? [];
  const current = instances.filter((i) => String(i.generation ?? 0) === String(model.generation ?? 0) && stateName(i.state) === "online").length;
  const desired = model.desiredReplicas ?? model.readyReplicas ?? 0;
  const older = instances.filter((i) => String(i.generation ?? 0) !== String(model.generation ?? 0)).length;
  let status = model.message ?? "";
  if (!status) status = older > 0 ? `Rolling restart: ${current} of ${desired} replaced` : (model.readyReplicas ?? 0) < desired ? `Starting: ${model.readyReplicas ?? 0} of ${desired} ready` : "Ready";
  return { upToDate: `${current} / ${desired}`, status };
}

function drawModels(models) {
  const body = $("models").tBodies[0];
  // Someone is typing in the table: it is left as it is until they are done.
  if (body.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
  body.replaceChildren();
  for (const model of models) {
    const row = document.createElement("tr");
    row.dataset.model = model.name;
    const progress = modelProgress(model);
    headerCell(row, model.name);
    cell(row, String(model.readyReplicas ?? 0));
    cell(row, model.managed ? String(model.desiredReplicas ?? 0) : "—");
    cell(row, model.managed ? progress.upToDate : "—").dataset.field = "up-to-date";
    cell(row, (model.engines ?? []).join(", "));
    cell(row, String(model.inFlight ?? 0));
    cell(row, progress.status).dataset.field = "status";
    const td = cell(row, "");
    td.className = "admin-only";
    if (role === "admin") actions(td, model);
    body.append(row);
  }
  $("no-models").hidden = models.length > 0;
}

function drawWorkers(workers) {
  const body = $("workers").tBodies[0];
  body.replaceChildren();
  for (const w of workers) {
    const info = w.worker;
    const row = document.createElement("tr");
    headerCell(row, info.workerId);
    cell(row, info.address);
    cell(row, String(w.instances.length));
    cell(row, String(info.inFlight ?? 0));
    const total = Number(info.memoryTotalBytes ?? 0);
    cell(row, `${mib(total - Number(info.memoryFreeBytes ?? 0))} / ${mib(total)}`);
    cell(row, (info.engines ?? []).join(", "));
    cell(row, joinPairs(info.labels));
    body.append(row);
  }
  $("no-workers").hidden = workers.length > 0;
}

function drawInstances(instances) {
  const body = $("instance-list").tBodies[0];
  body.replaceChildren();
  for (const i of instances) {
    const row = document.createElement("tr");
    row.dataset.instance = i.instanceId;
    headerCell(row, i.instanceId);
    cell(row, i.model);
    cell(row, stateName(i.state) + (i.message ? `: ${i.message}` : ""));
    cell(row, `${i.inFlight ?? 0} / ${i.maxConcurrency ?? "–"}`);
    cell(row, i.engine);
    cell(row, i.workerId);
    cell(row, i.address);
    cell(row, i.memoryBytes ? mib(i.memoryBytes) : "–");
    cell(row, joinPairs(i.labels));
    const td = cell(row, "");
    td.className = "admin-only";
    if (role === "admin") {
      for (const state of ["online", "offline", "drain"]) {
        td.append(button(state[0].toUpperCase() + state.slice(1), `Set ${i.instanceId} ${state}`, () => act(`${state} ${i.instanceId}`, () => api("POST", `/api/v1/instances/${encodeURIComponent(i.instanceId)}/${state}`))), " ");
      }
    }
    body.append(row);
  }
  $("no-instances").hidden = instances.length > 0;
}

/** Shows (or clears) what keeps the page from being current; what was last loaded stays on the page meanwhile. */
function trouble(message) {
  $("trouble").hidden = !message;
  $("trouble").textContent = message ? `${message} What is shown below was loaded before; it updates again as soon as the server answers.` : "";
  $("instances-trouble").hidden = !message;
  $("instances-trouble").textContent = $("trouble").textContent;
}

async function refresh() {
  try {
    const [models, workers, status] = await Promise.all([api("GET", "/api/v1/models"), api("GET", "/api/v1/workers"), api("GET", "/api/v1/status")]);
    trouble(status.etcd === "unreachable" ? "The control plane is unavailable: this server cannot reach etcd. Models, workers and instances are as last seen, and changes cannot be made until it is back." : null);
    drawModels(models.data);
    drawWorkers(workers.data);
    drawInstances(workers.data.flatMap((w) => w.instances));
    for (const el of document.querySelectorAll(".admin-only")) el.hidden = role !== "admin";
  } catch (err) {
    if (err.status === 401) trouble("Your key is no longer valid: sign in again.");
    else trouble(err.status === 503 ? `The control plane is unavailable: ${err.message}.` : `Cannot load: ${err.message}.`);
  }
  refreshTraffic();
}

// ---- Traffic: this gateway's last minutes as live charts (uPlot), from GET /api/v1/traffic.

const CHARTS = [
  { id: "chart-requests", label: "requests/s", color: "#12355b", values: (t) => t.requests },
  { id: "chart-tokens", label: "tokens/s", color: "#1b6e3a", values: (t) => t.tokens },
  { id: "chart-ttft", label: "TTFT ms", color: "#7a4a00", values: (t) => t.ttftMs },
  { id: "chart-errors", label: "error %", color: "#a00000", values: (t) => t.requests.map((n, i) => (n > 0 ? Math.round((1000 * t.errors[i]) / n) / 10 : null)) },
];
const plots = new Map();

function plotWidth(figure) {
  return Math.max(200, Math.floor(figure.clientWidth || 300));
}

function drawChart(spec, xs, ys) {
  const figure = $(spec.id);
  let plot = plots.get(spec.id);
  if (!plot) {
    const options = { width: plotWidth(figure), height: 140, legend: { show: false }, scales: { x: { time: true }, y: { range: (_u, min, max) => [0, Math.max(1, max)] } }, axes: [{ stroke: "#1a1a1a" }, { stroke: "#1a1a1a", size: 48 }], series: [{}, { label: spec.label, stroke: spec.color, width: 2, spanGaps: false }] };
    plot = new uPlot(options, [xs, ys], figure);
    plot.root.setAttribute("aria-hidden", "true");
    plots.set(spec.id, plot);
  } else plot.setData([xs, ys]);
}

const sum = (xs) => xs.reduce((a, b) => a + (b ?? 0), 0);

async function refreshTraffic() {
  if (!gateway || $("overview").hidden || typeof uPlot === "undefined") return;
  let t;
  try {
    t = await api("GET", "/api/v1/traffic?seconds=300");
  } catch (err) {
    $("traffic-now").textContent = `Cannot load the traffic: ${err.message}`;
    return;
  }
  const xs = t.requests.map((_, i) => t.start + i);
  for (const spec of CHARTS) drawChart(spec, xs, spec.values(t));
  if (!t.recorded) {
    $("traffic-now").textContent = "Traffic is not recorded: observability is off on this gateway.";
    return;
  }
  // The last minute, in words (what the charts show, for anyone who does not see them).
  const last = (xs) => xs.slice(-60);
  const requests = sum(last(t.requests));
  const ttfts = last(t.ttftMs).filter((v) => v !== null);
  const errors = sum(last(t.errors));
  $("traffic-now").textContent = `Last minute: ${requests} requests (${(requests / 60).toFixed(2)}/s), ${(sum(last(t.tokens)) / 60).toFixed(1)} tokens/s, time to first token ${ttfts.length ? `${Math.round(sum(ttfts) / ttfts.length)} ms` : "–"}, errors ${requests ? `${((100 * errors) / requests).toFixed(1)}%` : "–"}.`;
}

window.addEventListener("resize", () => {
  for (const spec of CHARTS) plots.get(spec.id)?.setSize({ width: plotWidth($(spec.id)), height: 140 });
});

async function start() {
  clearInterval(timer);
  try {
    const me = await api("GET", "/api/v1/whoami");
    role = me.role;
    $("who").textContent = me.name ? `Signed in as ${me.name} (${me.role})` : "Open: no API keys in use";
  } catch (err) {
    role = null;
    show("sign-in");
    if (sessionStorage.getItem(KEY)) $("sign-in-error").textContent = err.message;
    return;
  }
  try {
    await api("GET", "/api/v1/requests?limit=1");
    gateway = true;
  } catch {
    gateway = false;
  }
  for (const el of document.querySelectorAll("[data-gateway]")) el.hidden = !gateway;
  $("traffic-elsewhere").hidden = gateway;
  route();
  followEvents();
  await refresh();
  timer = setInterval(refresh, 2000);
}

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("api-key").value.trim());
  $("api-key").value = "";
  $("sign-in-error").textContent = "";
  start();
});
$("sign-out").addEventListener("click", () => {
  events?.abort();
  sessionStorage.removeItem(KEY);
  $("who").textContent = "";
  start();
});
window.addEventListener("hashchange", () => role !== null && route());
$("request-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  loadRequests();
});
$("older").addEventListener("click", () => loadRequests(requestCursor));
$("thumbs-up").addEventListener("click", () => rate(1));
$("thumbs-down").addEventListener("click", () => rate(-1));
$("feedback-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const comment = $("feedback-comment").value.trim();
    await api("POST", `/api/v1/requests/${encodeURIComponent(shown)}/feedback`, { score: rating, ...(comment ? { comment } : {}) });
    $("feedback-status").textContent = "Feedback saved.";
    loadRequests();
  } catch (err) {
    $("feedback-status").textContent = `Not saved: ${err.message}`;
  }
});
$("chat-form").addEventListener("submit", chat);
$("start-engine").addEventListener("change", engineChanged);
$("start-form").addEventListener("submit", submitModel);
$("start-cancel").addEventListener("click", resetForm);
engineChanged();
start();
