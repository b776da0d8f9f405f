// Cellcloud dashboard: Keystone login, then one live stream (/dashboard/stream, text/event-stream read with
// fetch so the token goes in a header). Every value from the server is put in the page as text, never HTML.
"use strict";

// page: which servers the stream lists (Nova's marker/limit and name/status filters, applied by the API);
// earlier: the markers of the pages before this one, for "previous"
const state = { token: null, snapshot: null, selected: null, abort: null, restart: false,
  page: { limit: 50, marker: "", name: "", status: "" }, earlier: [] };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

async function login(event) {
  event.preventDefault();
  const f = event.target.elements;
  const body = { auth: {
    identity: { methods: ["password"], password: { user: {
      name: f.user.value, domain: { name: f.domain.value }, password: f.password.value } } },
    scope: { project: { name: f.project.value, domain: { name: f.domain.value } } } } };
  $("login-error").textContent = "";
  const resp = await fetch("../identity/v3/auth/tokens", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (resp.status !== 201) {
    $("login-error").textContent = resp.status === 401 ? "Wrong user, password or project." : `Login failed (${resp.status}).`;
    return;
  }
  state.token = resp.headers.get("X-Subject-Token");
  f.password.value = "";
  $("login").hidden = true; $("main").hidden = false; $("logout").hidden = false;
  watch();
}

function logout(message) {
  if (state.abort) state.abort.abort();
  state.token = null;
  $("main").hidden = true; $("logout").hidden = true; $("login").hidden = false;
  $("login-error").textContent = message || "";
  setLive(false);
}

function setLive(on) {
  $("live").className = on ? "on" : "off";
  $("live").textContent = on ? "live" : "offline";
}

async function watch() {
  while (state.token) {
    state.abort = new AbortController();
    try {
      const query = new URLSearchParams(Object.entries(state.page).filter(([, v]) => v !== "" && v != null));
      const resp = await fetch(`stream?${query}`, { headers: { "X-Auth-Token": state.token }, signal: state.abort.signal });
      if (resp.status === 401 || resp.status === 403) { logout(resp.status === 403 ? "The dashboard is for admins." : "Logged out."); return; }
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
          if (block.startsWith("event: expired")) { logout("Your token expired: log in again."); return; }
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) { setLive(true); render(JSON.parse(data)); }
        }
      }
    } catch (err) {
      if (!state.token) return;
    }
    if (state.restart) { state.restart = false; continue; }  // another page asked for: reconnect at once
    setLive(false);
    await new Promise((r) => setTimeout(r, 2000));  // the API restarted or the network blinked: reconnect
  }
}

function render(s) {
  state.snapshot = s;
  $("cluster").textContent = s.cluster;
  renderCells(s); renderHosts(s); renderServers(); renderFaults(s); renderBoots(s);
  chart($("rate"), s.boot_rate.map(([t, v]) => [t, v]), "/min");
  chart($("latency"), s.boot_latency.map(([c, v]) => [Date.parse(c) / 1000, v]).sort((a, b) => a[0] - b[0]), "s");
}

function renderCells(s) {
  const bySite = new Map();
  for (const cell of s.cells) {
    const site = cell.site || "(no site)";
    if (!bySite.has(site)) bySite.set(site, []);
    bySite.get(site).push(cell);
  }
  const out = [];
  for (const [site, cells] of bySite) {
    const box = el("div", { class: "site" }, el("b", {}, site));
    for (const cell of cells) {
      const depth = (cell.path.match(/!/g) || []).length;
      const node = el("div", { class: `cell ${cell.health}`, "data-cell": cell.path, title: cell.path },
        el("span", { class: "health" }, cell.health), el("b", {}, cell.name),
        ...cell.hosts.map((h) => el("span", { class: `host ${h.state}`, "data-host": h.name }, `${h.name} ${h.state}`)));
      node.style.marginLeft = `${depth * 1.2}em`;
      box.append(node);
    }
    out.push(box);
  }
  $("cells").replaceChildren(...out);
}

function bar(label, used, total) {
  const share = total > 0 ? Math.min(used / total, 1) : 0;
  const span = el("span"); span.style.width = `${(share * 100).toFixed(1)}%`;
  return el("div", { class: share > 0.9 ? "bar high" : "bar" }, span, el("i", {}, `${label} ${used} / ${total}`));
}

function renderHosts(s) {
  $("hosts").replaceChildren(...s.hosts.map((h) => el("div", { class: "bars", "data-host": h.host },
    el("b", {}, `${h.host} `), el("small", {}, `${h.cell} · ${h.state} · ${h.running_vms} guests`),
    bar("vCPU", h.vcpus_used, h.vcpus), bar("RAM MiB", h.memory_mb_used, h.memory_mb),
    bar("disk GiB", h.local_gb_used, h.local_gb))));
}

// a new page or filter: restart the stream with it (the API filters and pages, so every server is reachable)
function showPage(change, earlier) {
  Object.assign(state.page, change);
  state.earlier = earlier;
  state.restart = true;
  if (state.abort) state.abort.abort();
}

function filtersChanged() {
  showPage({ marker: "", name: $("filter-name").value.trim(), status: $("filter-status").value,
    limit: Number($("page-size").value) }, []);
}

function renderBoots(s) {
  const b = s.boots;
  let text = `${b.accepted} boots accepted, counted over ${b.reporting} of ${b.workers} API workers`;
  if (!b.metrics && b.workers > 1) text += " (api.metrics is not set: the other workers cannot be read)";
  $("boots").textContent = text;
}

function renderServers() {
  const s = state.snapshot;
  if (!s) return;
  const rows = s.servers;
  const first = state.earlier.length * state.page.limit;
  $("page-info").textContent = rows.length ? `servers ${first + 1}-${first + rows.length}` : "no servers";
  $("page-prev").disabled = state.earlier.length === 0;
  $("page-next").disabled = !s.page.next;
  $("servers").replaceChildren(...rows.map((v) => {
    const tr = el("tr", { class: v.status, "data-server": v.id },
      el("td", {}, v.name), el("td", {}, v.status), el("td", {}, v.host || ""), el("td", {}, v.project),
      el("td", {}, v.created), el("td", {}, v.boot_seconds == null ? "" : v.boot_seconds.toFixed(2)));
    tr.addEventListener("click", () => showEvents(v));
    return tr;
  }));
}

async function showEvents(server) {
  state.selected = server.id;
  const headers = { "X-Auth-Token": state.token, "X-OpenStack-Nova-API-Version": "2.58" };
  const base = `../compute/v2.1/servers/${encodeURIComponent(server.id)}/os-instance-actions`;
  const resp = await fetch(base, { headers });
  if (!resp.ok) { $("events").replaceChildren(el("p", {}, `events unavailable (${resp.status})`)); return; }
  const actions = (await resp.json()).instanceActions || [];
  const items = [];
  for (const a of actions) {
    const one = await fetch(`${base}/${encodeURIComponent(a.request_id)}`, { headers });
    const events = one.ok ? ((await one.json()).instanceAction.events || []) : [];
    items.push(el("li", {}, `${a.start_time} ${a.action} (${a.request_id}) ${a.message || ""}`,
      el("ul", {}, ...events.map((e) => el("li", {}, `${e.start_time} ${e.event}: ${e.result || "running"} ${e.host || ""}`)))));
  }
  if (state.selected === server.id) {
    $("events").replaceChildren(el("b", {}, `Events of ${server.name} (${server.id})`), el("ul", {}, ...items));
  }
}

function renderFaults(s) {
  $("faults").replaceChildren(...s.faults.map((f) =>
    el("li", {}, el("b", {}, `${f.name} `), `${f.created || ""} ${f.code || ""}: ${f.message || ""}`)));
}

function chart(svg, points, unit) {
  const w = 400, h = 120, pad = 18;
  const now = Date.now() / 1000, since = now - 3600;
  const shown = points.filter(([t]) => t >= since);
  const top = Math.max(1, ...shown.map(([, v]) => v));
  const x = (t) => pad + (w - 2 * pad) * (t - since) / 3600;
  const y = (v) => h - pad - (h - 2 * pad) * v / top;
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text != null) n.textContent = text;
    return n;
  };
  const kids = [make("text", { x: 2, y: 10 }, `${top.toFixed(1)} ${unit}`), make("text", { x: 2, y: h - 4 }, "-60 min"),
    make("text", { x: w - 30, y: h - 4 }, "now")];
  if (shown.length > 1) kids.push(make("polyline", { points: shown.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }));
  for (const [t, v] of shown.slice(-200)) kids.push(make("circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 1.5 }));
  svg.replaceChildren(...kids);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (e) => { login(e).catch((err) => { $("login-error").textContent = String(err); }); });
  $("logout").addEventListener("click", () => logout(""));
  let typing = null;
  $("filter-name").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(filtersChanged, 400); });
  $("filter-status").addEventListener("change", filtersChanged);
  $("page-size").addEventListener("change", filtersChanged);
  $("page-next").addEventListener("click", () => {
    const next = state.snapshot && state.snapshot.page.next;
    if (next) showPage({ marker: next }, [...state.earlier, state.page.marker]);
  });
  $("page-prev").addEventListener("click", () => {
    if (!state.earlier.length) return;
    const earlier = state.earlier.slice(0, -1);
    showPage({ marker: state.earlier[state.earlier.length - 1] }, earlier);
  });
});
