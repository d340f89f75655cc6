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

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.append(td);
  return td;
}

function show(section) {
  for (const id of ["sign-in", "overview"]) $(id).hidden = id !== section;
  $("sign-out").hidden = section !== "overview" || !sessionStorage.getItem(KEY);
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
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = model.name;
      row.append(name);
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
    for (const el of document.querySelectorAll(".admin-only")) el.hidden = role !== "admin";
  } catch (err) {
    $("status").textContent = err.status === 401 ? "Your key is no longer valid: sign in again." : `Cannot load: ${err.message}`;
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
  show("overview");
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
  sessionStorage.removeItem(KEY);
  $("who").textContent = "";
  start();
});
start();
