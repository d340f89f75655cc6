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
  if (section === "events") followEvents();
}

/** The page the address names (#requests, ...), or the overview. */
function route() {
  const page = location.hash.slice(1);
  const gatewayOnly = page === "requests" || page === "playground";
  show(PAGES.includes(page) && (!gatewayOnly || gateway) ? page : "overview");
}

// ---- Starting a model (admin): the fields of `smmf model start`; the server checks them and its message is shown.

const FILE_ENGINES = new Set(["llama.cpp", "llama.cpp-server"]);

function engineChanged() {
  const file = FILE_ENGINES.has($("start-engine").value);
  $("file-fields").hidden = !file;
  $("upstream-fields").hidden = file;
  $("start-source").required = file;
}

async function startModel(event) {
  event.preventDefault();
  const name = $("start-name").value.trim();
  const engine = $("start-engine").value;
  const spec = { name, engine, replicas: Number($("start-replicas").value) };
  if (FILE_ENGINES.has(engine)) {
    spec.source = $("start-source").value.trim();
    spec.llamaCpp = { embeddings: true, contextSize: Number($("start-context").value), sequences: Number($("start-sequences").value) };
  } else {
    spec.proxy = { baseUrl: $("start-base-url").value.trim(), upstreamModel: $("start-upstream-model").value.trim() };
  }
  await act(`start ${name}`, () => api("POST", "/api/v1/models", spec));
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
    const facts = [["Id", r.id], ["Model", r.model], ["Instance", r.instance ?? "–"], ["Status", String(r.status)], ["Error", r.errorMessage ?? "–"], ["Prompt tokens", String(r.promptTokens ?? "–")], ["Completion tokens", String(r.completionTokens ?? "–")], ["Latency", `${Math.round(r.latencyMs)} ms`], ["Time to first token", r.ttftMs == null ? "–" : `${Math.round(r.ttftMs)} ms`], ["Trace id", r.traceId ?? "–"]];
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

// ---- Events: the server's event stream, newest first, as it comes.

let events;

async function followEvents() {
  if (events) return;
  events = new AbortController();
  const list = $("event-list");
  $("events-status").textContent = "Following events…";
  try {
    const res = await fetch("/api/v1/events", { headers: headers(), signal: events.signal });
    await readSse(res, (text) => {
      const e = JSON.parse(text);
      const item = document.createElement("li");
      item.textContent = `${e.time ? new Date(e.time).toLocaleTimeString() : new Date().toLocaleTimeString()} ${(e.type ?? "").replace("EVENT_TYPE_", "").toLowerCase()} ${e.model ?? ""} ${e.instanceId ?? ""} ${e.message ?? ""}`.replace(/\s+/g, " ").trim();
      list.prepend(item);
      while (list.children.length > 200) list.lastChild.remove();
    });
    $("events-status").textContent = "The event stream ended.";
  } catch (err) {
    if (err.name !== "AbortError") $("events-status").textContent = `Event stream: ${err.message}`;
  } finally {
    events = undefined;
  }
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
  const body = { model: $("chat-model").value, messages: [{ role: "user", content: $("chat-message").value }], temperature: Number($("chat-temperature").value), max_tokens: Number($("chat-max-tokens").value), stream: true };
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

async function act(what, run) {
  try {
    await run();
    $("status").textContent = `${what}: done`;
  } catch (err) {
    $("status").textContent = `${what}: ${err.message}`;
  }
  await refresh();
}

function actions(td, model) {
  const stop = document.createElement("button");
  stop.type = "button";
  stop.textContent = "Stop";
  stop.setAttribute("aria-label", `Stop ${model.name}`);
  stop.addEventListener("click", () => {
    if (confirm(`Stop ${model.name}? Its instances are unloaded.`)) act(`stop ${model.name}`, () => api("DELETE", `/api/v1/models/${encodeURIComponent(model.name)}`));
  });
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
  td.append(stop, " ", label, scale);
}

async function refresh() {
  try {
    const [models, workers] = await Promise.all([api("GET", "/api/v1/models"), api("GET", "/api/v1/workers")]);
    const body = $("models").tBodies[0];
    // Someone is typing in the table: it is left as it is until they are done.
    const editing = body.contains(document.activeElement) && document.activeElement.tagName === "INPUT";
    if (!editing) body.replaceChildren();
    for (const model of editing ? [] : models.data) {
      const row = document.createElement("tr");
      row.dataset.model = model.name;
      headerCell(row, model.name);
      cell(row, String(model.readyReplicas));
      cell(row, model.spec?.replicas !== undefined ? String(model.spec.replicas) : "—");
      cell(row, (model.engines ?? []).join(", "));
      cell(row, model.statusMessage ?? model.message ?? "");
      const td = cell(row, "");
      td.className = "admin-only";
      if (role === "admin") actions(td, model);
      body.append(row);
    }
    $("no-models").hidden = models.data.length > 0;
    const wbody = $("workers").tBodies[0];
    wbody.replaceChildren();
    for (const w of workers.data) {
      const row = document.createElement("tr");
      cell(row, w.worker.workerId);
      cell(row, w.worker.address);
      cell(row, String(w.instances.length));
      cell(row, `${Math.round(Number(w.worker.memoryFreeBytes ?? 0) / 2 ** 20)} MiB`);
      wbody.append(row);
    }
    const ibody = $("instance-list").tBodies[0];
    ibody.replaceChildren();
    const instances = workers.data.flatMap((w) => w.instances);
    for (const i of instances) {
      const row = document.createElement("tr");
      row.dataset.instance = i.instanceId;
      headerCell(row, i.instanceId);
      cell(row, i.model);
      cell(row, (i.state ?? "").replace("INSTANCE_STATE_", "").toLowerCase());
      cell(row, String(i.inFlight ?? 0));
      cell(row, i.engine);
      cell(row, i.workerId);
      cell(row, i.address);
      const td = cell(row, "");
      td.className = "admin-only";
      if (role === "admin") {
        for (const state of ["online", "offline", "drain"]) {
          const b = document.createElement("button");
          b.type = "button";
          b.textContent = state[0].toUpperCase() + state.slice(1);
          b.setAttribute("aria-label", `Set ${i.instanceId} ${state}`);
          b.addEventListener("click", () => act(`${state} ${i.instanceId}`, () => api("POST", `/api/v1/instances/${encodeURIComponent(i.instanceId)}/${state}`)));
          td.append(b, " ");
        }
      }
      ibody.append(row);
    }
    $("no-instances").hidden = instances.length > 0;
    for (const el of document.querySelectorAll(".admin-only")) el.hidden = role !== "admin";
  } catch (err) {
    const message = err.status === 401 ? "Your key is no longer valid: sign in again." : `Cannot load: ${err.message}`;
    $("status").textContent = message;
    $("instances-status").textContent = message;
  }
}

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
  for (const a of document.querySelectorAll("#nav a[data-gateway]")) a.hidden = !gateway;
  route();
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
$("start-form").addEventListener("submit", startModel);
engineChanged();
start();
