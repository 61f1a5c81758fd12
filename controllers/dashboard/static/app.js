// The kubeless dashboard: renders the snapshots the controllers push on /events
// (server-sent events), and keeps ages current in between. Read-only; no framework.
"use strict";

const STATE_CLASS = {
  ready: "ok", running: "ok", complete: "ok", completed: "ok", active: "ok",
  down: "bad", failed: "bad", rejected: "bad", orphaned: "bad", paused: "warn",
  drain: "warn", pause: "warn", pending: "warn", assigned: "info", accepted: "info",
  preparing: "info", starting: "info", updating: "info", shutdown: "", remove: "",
};

let received = 0; // client clock (s) when the last snapshot arrived
let generated = 0; // the controllers' clock (s) when it was made

// kubectl's HumanDuration, as kubeless.api.columns.human_duration writes it.
function humanDuration(s) {
  s = Math.max(0, Math.floor(s));
  const pair = (a, u, b, v) => (b ? `${a}${u}${b}${v}` : `${a}${u}`);
  const m = Math.floor(s / 60), h = Math.floor(s / 3600), d = Math.floor(h / 24);
  if (s < 120) return `${s}s`;
  if (m < 10) return pair(m, "m", s % 60, "s");
  if (m < 180) return `${m}m`;
  if (h < 8) return pair(h, "h", m % 60, "m");
  if (h < 48) return `${h}h`;
  if (h < 24 * 8) return pair(d, "d", h % 24, "h");
  return `${d}d`;
}

function ageOf(since) {
  return humanDuration(Date.now() / 1000 - received + generated - since);
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

// A coloured label; its colour from the first word (a state), unless given.
function badge(text, cls) {
  const td = document.createElement("td");
  if (text) {
    const span = document.createElement("span");
    const key = String(text).split(" ")[0];
    span.className = `badge ${cls ?? STATE_CLASS[key] ?? ""}`;
    span.textContent = text;
    td.appendChild(span);
  }
  return td;
}

function ageCell(since) {
  const td = cell(ageOf(since));
  td.dataset.since = since;
  return td;
}

function fill(id, rows, toCells, empty) {
  const body = document.querySelector(`#${id} tbody`);
  const out = rows.map((r) => {
    const tr = document.createElement("tr");
    const made = toCells(r, tr);
    made.forEach((td) => tr.appendChild(td));
    return tr;
  });
  if (!out.length) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell(empty);
    td.colSpan = document.querySelectorAll(`#${id} thead th`).length;
    tr.appendChild(td);
    out.push(tr);
  }
  body.replaceChildren(...out);
}

function replicasCell(s) {
  const td = document.createElement("td");
  const bar = document.createElement("span");
  bar.className = "progress";
  const done = document.createElement("span");
  done.style.width = `${s.desired ? Math.min(100, (100 * s.running) / s.desired) : 0}%`;
  bar.appendChild(done);
  td.append(bar, s.replicas);
  return td;
}

function omitted(id, n, what) {
  document.getElementById(id).textContent = n ? `and ${n} more ${what} (not shown)` : "";
}

function render(snap) {
  received = Date.now() / 1000;
  generated = snap.generatedAt;
  fill("nodes", snap.nodes, (n) => [cell(n.name), badge(n.state), badge(n.availability),
    cell(n.role), cell(n.address, "mono"), cell(n.tasks), cell(n.message, "wrap")], "no nodes");
  fill("services", snap.services, (s) => [cell(s.namespace), cell(s.name), cell(s.mode),
    replicasCell(s), badge(s.update), cell(s.ports, "mono")], "no services");
  fill("tasks", snap.tasks, (t) => [cell(t.name), cell(t.id.slice(0, 12), "mono"),
    cell(t.node), badge(t.state), cell(t.desired), ageCell(t.since),
    cell(t.error, "wrap")], "no tasks");
  fill("events", snap.events, (e, tr) => {
    if (e.type === "Warning") tr.className = "warning";
    return [ageCell(e.since), badge(e.type, e.type === "Warning" ? "bad" : "info"),
      cell(e.reason), cell(e.object), cell(e.message, "wrap"), cell(e.repeat)];
  }, "no events");
  omitted("tasks-omitted", snap.tasksOmitted, "tasks");
  omitted("events-omitted", snap.eventsOmitted, "events");
  const ready = snap.nodes.filter((n) => n.state === "ready").length;
  const running = snap.tasks.filter((t) => t.state === "running").length;
  document.getElementById("summary").textContent =
    `${ready}/${snap.nodes.length} nodes ready · ${snap.services.length} services · ` +
    `${running} tasks running`;
}

function tick() {
  document.querySelectorAll("td[data-since]").forEach((td) => {
    td.textContent = ageOf(Number(td.dataset.since));
  });
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/events");
  source.onopen = () => { live.textContent = "live"; live.className = "badge ok"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "badge stale"; };
  source.onmessage = (msg) => render(JSON.parse(msg.data));
}

connect();
setInterval(tick, 1000);
