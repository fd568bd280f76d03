// The hot-desking tab: desks with state, user, since and online; remote logout;
// live updates over Server-Sent Events; a desk's history. No build step.
"use strict";

const api = "/api/v1";
let me = null;
let events = null;
const rows = new Map();

const $ = (id) => document.getElementById(id);

function csrf() {
  const m = document.cookie.match(/(?:^|; )hotdesk_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

async function call(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(api + path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json() : null;
  if (!res.ok) {
    const err = new Error((data && (data.detail || data.title)) || res.statusText);
    err.status = res.status;
    throw err;
  }
  return data;
}

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
               : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

function cell(text, cls, label) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  if (label) td.dataset.label = label;
  return td;
}

function renderDesk(d) {
  let tr = rows.get(d.desk);
  if (!tr) {
    tr = document.createElement("tr");
    rows.set(d.desk, tr);
    $("desk-rows").appendChild(tr);
  }
  tr.replaceChildren();
  tr.dataset.desk = d.desk;
  tr.dataset.state = d.state;
  tr.className = d.state === "idle" ? "idle" : "in";
  const name = document.createElement("td");
  name.dataset.label = "Desk";
  const link = document.createElement("button");
  link.type = "button";
  link.className = "link desk-name";
  link.textContent = d.desk;
  link.title = [d.vendor, d.model, d.mac].filter(Boolean).join(" ");
  link.addEventListener("click", () => showHistory(d.desk));
  name.appendChild(link);
  tr.appendChild(name);
  const state = cell(d.state === "idle" ? "idle" : "logged in", "state", "State");
  tr.appendChild(state);
  tr.appendChild(cell(d.user ? `${d.user}${d.name ? " · " + d.name : ""}` : "—", "user", "User"));
  tr.appendChild(cell(fmtTime(d.since), "since", "Since"));
  tr.appendChild(cell(d.online ? "online" : "offline", d.online ? "online" : "offline", "Phone"));
  const act = document.createElement("td");
  act.className = "act";
  if (d.state === "logged_in" && me && me.role === "admin") {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "Logout";
    b.className = "logout";
    b.addEventListener("click", () => logout(d));
    act.appendChild(b);
  }
  tr.appendChild(act);
  summarize();
}

function summarize() {
  const all = [...rows.values()];
  const idle = all.filter((r) => r.dataset.state === "idle").length;
  $("summary").textContent = `${all.length} desks · ${idle} idle`;
}

async function loadDesks() {
  const data = await call("GET", "/desks");
  $("desk-rows").replaceChildren();
  rows.clear();
  data.desks.forEach(renderDesk);
  summarize();
}

async function logout(d) {
  if (!window.confirm(`Log ${d.user}${d.name ? " (" + d.name + ")" : ""} out of ${d.desk}?`)) return;
  $("action-error").textContent = "";
  try {
    await call("POST", `/desks/${encodeURIComponent(d.desk)}/logout?user=${encodeURIComponent(d.user)}`);
  } catch (e) {
    if (e.status === 401) { start(); return; }
    $("action-error").textContent = `${d.desk}: ${e.message}`;
  }
}

function historyItem(e) {
  const li = document.createElement("li");
  const what = e.type === "LoggedIn" ? `${e.user} logged in`
    : e.type === "LoggedOut" ? `${e.user} logged out (${e.reason.replace(/_/g, " ")})`
    : e.type === "Roamed" ? `${e.from_user} → ${e.user}`
    : `${e.type} ${e.user}`;
  li.textContent = `${fmtTime(e.at)} — ${what} — by ${e.actor}`;
  return li;
}

// The history comes in pages, newest first; "Older" follows the page's `next` link.
let historyNext = null;

function showHistoryPage(data) {
  const list = $("history-list");
  data.entries.forEach((e) => list.appendChild(historyItem(e)));
  if (!list.children.length) list.innerHTML = "<li>No events yet.</li>";
  historyNext = data.next;
  $("history-older").hidden = !historyNext;
}

async function showHistory(desk) {
  const data = await call("GET", `/desks/${encodeURIComponent(desk)}/history`);
  $("history-desk").textContent = desk;
  $("history-list").replaceChildren();
  showHistoryPage(data);
  $("history").hidden = false;
  $("history").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

async function olderHistory() {
  if (!historyNext || !historyNext.startsWith(api + "/")) return;
  $("history-older").disabled = true;
  try {
    showHistoryPage(await call("GET", historyNext.slice(api.length)));
  } catch (e) {
    if (e.status === 401) { start(); return; }
    $("action-error").textContent = `history: ${e.message}`;
  } finally {
    $("history-older").disabled = false;
  }
}

function live() {
  if (events) events.close();
  events = new EventSource(api + "/events");
  events.addEventListener("desk", (m) => renderDesk(JSON.parse(m.data)));
  events.addEventListener("open", () => {
    $("live").classList.add("on");
    loadDesks().catch(() => {});
  });
  events.addEventListener("error", () => {
    $("live").classList.remove("on");
    // An expired session makes the stream fail for good: back to the sign-in form.
    call("GET", "/session").catch((e) => {
      if (e.status === 401) { events.close(); start(); }
    });
  });
}

async function start() {
  try {
    me = await call("GET", "/session");
  } catch (e) {
    $("signin").hidden = false;
    $("desks").hidden = true;
    $("who").hidden = true;
    return;
  }
  $("signin").hidden = true;
  $("who").hidden = false;
  $("who-name").textContent = `${me.user} (${me.role})`;
  $("desks").hidden = false;
  await loadDesks();
  live();
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  $("signin-error").textContent = "";
  try {
    await call("POST", "/session", { username: f.get("username"), password: f.get("password") });
    ev.target.reset();
    await start();
  } catch (e) {
    $("signin-error").textContent = e.message;
  }
});
$("sign-out").addEventListener("click", async () => {
  await call("DELETE", "/session").catch(() => {});
  if (events) events.close();
  me = null;
  await start();
});
$("history-close").addEventListener("click", () => { $("history").hidden = true; });
$("history-older").addEventListener("click", olderHistory);

start();
