// MessagePusher web UI: a thin client of the JSON API, logged in with the session cookie.
// Every call goes through api(); mutations carry the session's CSRF token; a sensitive call the
// API refuses with confirmation_required asks for the password/TOTP in a modal and is sent again.
"use strict";

const MESSAGE_STATUSES = ["accepted", "scheduled", "fetching", "ai_processing", "queued", "sending", "delivered", "partially_failed", "failed", "cancelled"];
const FINAL = new Set(["delivered", "partially_failed", "failed", "cancelled"]);
const MAILBOXES = ["fetcher", "ai_pool", "channel_pool", "dispatcher", "schedules"];
const TASK_STATES = ["ready", "leased", "failed", "dead", "done", "cancelled"];
const ALL_SCOPES = ["messages:send", "messages:read", "channels:read", "channels:write", "keys:manage", "admin"];
const TARGET_FIELDS = ["url", "webhook_url", "server", "server_url", "base_url", "host", "to", "chat_id", "topic", "device_key", "members"];

const state = {
  csrf: sessionStorage.getItem("mp_csrf") || "", user: null, lang: localStorage.getItem("mp_lang") || "en",
  cursor: null, auditAsked: 0, config: null, channelSchemas: null, channels: [], editing: null,
  stream: null, polling: null, openMessage: null, reloadTimer: null, taskCursor: null, messages: [],
};

for (const [status, zh] of Object.entries(STATUS_ZH)) ZH[`st_${status}`] = zh;
for (const [event, zh] of Object.entries(EVENT_ZH)) ZH[`ev_${event}`] = zh;
AUDIT_ACTIONS.forEach(([, , zh], i) => { ZH[`au_${i}`] = zh; });

function t(key, en) { return state.lang === "zh" ? ZH[key] || en || key : en || key; }
function $(id) { return document.getElementById(id); }
function label(key, en) { return `<span data-i18n="${esc(key)}" data-en="${esc(en)}">${esc(t(key, en))}</span>`; }
function yesNo(value) { return value ? label("yes", "yes") : label("no", "no"); }
function button(action, id, key, en, style = "btn-outline-secondary") {
  return `<button type="button" class="btn btn-sm ${style}" data-${action}="${esc(id)}" data-i18n="${key}" data-en="${esc(en)}">${esc(t(key, en))}</button>`;
}
function statusBadge(status) {
  const colour = { delivered: "success", sent: "success", ok: "success", running: "success", stale: "warning", resolved: "success", done: "success",
    failed: "danger", dead: "danger", denied: "danger", error: "danger", firing: "danger", given_up: "danger", stopped: "danger",
    partially_failed: "warning", restarting: "warning", cancelled: "secondary", missed: "warning",
    recalled: "success", edited: "success", not_supported: "secondary" }[status] || "info";
  return `<span class="badge text-bg-${colour} status-${esc(status)}" data-status="${esc(status)}">${label(`st_${status}`, String(status).replace(/_/g, " "))}</span>`;
}
function when(iso) { return timeTag(iso, state.lang); }
function rowsOr(rows, columns) { return rows.join("") || `<tr class="mp-empty"><td colspan="${columns}">${label("none", "none")}</td></tr>`; }

// Every table with class mp-cards turns into labelled cards on a phone: each cell carries its
// column's (translated) heading.
function labelCells(root = document) {
  root.querySelectorAll("table.mp-cards").forEach((table) => {
    const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    table.querySelectorAll("tbody tr").forEach((tr) => [...tr.cells].forEach((td, i) => { td.dataset.label = heads[i] || ""; }));
  });
}

function translate() {
  document.querySelectorAll("[data-i18n]").forEach((el) => {
    if (!el.dataset.en) el.dataset.en = el.textContent;
    el.textContent = t(el.dataset.i18n, el.dataset.en);
  });
  document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
    if (!el.dataset.enPlaceholder) el.dataset.enPlaceholder = el.placeholder;
    el.placeholder = t(el.dataset.i18nPlaceholder, el.dataset.enPlaceholder);
  });
  $("lang").textContent = state.lang === "en" ? "中文" : "English";
  document.documentElement.lang = state.lang === "en" ? "en" : "zh-CN";
  document.querySelectorAll(".tz-name").forEach((el) => { el.textContent = `(${zoneName()})`; });
  labelCells();
  updateLive();
}

// --- errors, toasts, dialogs -----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, details) { super(message); this.status = status; this.code = code; this.details = details; }
}
// An error already on screen (a toast, inline, or the log-in view): report() leaves it alone.
class ShownError extends Error {}

function errorText(err) {
  if (state.lang !== "zh") return err.message;
  const base = ERROR_ZH[err.code] || `错误 ${err.status || ""}`.trim();
  const fields = Array.isArray(err.details) ? err.details.map((d) => d.field).filter(Boolean) : [];
  return err.code === "invalid_field" && fields.length ? `${base}：${fields.join("、")}（${err.message}）` : base;
}

function toast(kind, text) {
  const el = document.createElement("div");
  el.className = `toast align-items-center border-0 text-bg-${kind}`;
  el.setAttribute("role", kind === "danger" ? "alert" : "status");
  el.innerHTML = `<div class="d-flex"><div class="toast-body"></div><button type="button" class="btn-close btn-close-white me-2 m-auto" data-bs-dismiss="toast" aria-label="Close"></button></div>`;
  el.querySelector(".toast-body").textContent = text;
  $("toasts").append(el);
  el.addEventListener("hidden.bs.toast", () => el.remove());
  bootstrap.Toast.getOrCreateInstance(el, { delay: kind === "danger" ? 12000 : 5000 }).show();
}

function clearFieldErrors(form) {
  if (!form) return;
  form.querySelectorAll(".is-invalid").forEach((el) => el.classList.remove("is-invalid"));
  form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
}

// The API's details name fields ("title", "config.url", "scopes.0"): the message goes beside the
// input of that name, or the nearest feedback slot for its first part.
function showFieldErrors(form, err) {
  if (!form) return false;
  const details = Array.isArray(err.details) ? err.details : [];
  const fields = details.filter((d) => d && d.field).map((d) => [d.field, d.message]);
  if (err.code === "wrong_password") fields.push(["current_password", errorText(err)]);
  let shown = false;
  for (const [field, message] of fields) {
    const candidates = [field, field.replace(/\.\d+$/, ""), field.split(".")[0]];
    const name = candidates.find((n) => form.querySelector(`[data-error-for="${CSS.escape(n)}"]`) || form.querySelector(`[name="${CSS.escape(n)}"]`));
    if (!name) continue;
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (input) input.classList.add("is-invalid");
    const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`) || (input && input.parentElement.querySelector(".invalid-feedback"));
    if (slot) slot.textContent = state.lang === "zh" && err.code !== "wrong_password" ? `${ZH.invalid_field}：${message}` : message;
    if (!shown && input) input.focus();
    shown = true;
  }
  return shown;
}

function report(err, form) {
  if (err instanceof ShownError) return;
  if (err instanceof ApiError) {
    showFieldErrors(form, err);
    toast("danger", errorText(err));
    return;
  }
  toast("danger", String((err && err.message) || err));
}

// Adds an async listener: the handler starts at once (so preventDefault() still works); a failure
// is shown beside the form's fields and in a toast instead of escaping to the console.
function on(target, type, handler) {
  target.addEventListener(type, async (event) => {
    const form = event.target instanceof HTMLFormElement ? event.target : null;
    if (type === "submit") clearFieldErrors(form);
    try { await handler(event); } catch (err) { report(err, form); }
  });
}

function modal(id) { return bootstrap.Modal.getOrCreateInstance($(id)); }

// Resolves with the secret typed, or null when the dialog is closed without one.
function askSecret(err, again) {
  return new Promise((resolve) => {
    const box = $("confirm-modal");
    $("confirm-secret").value = "";
    $("confirm-secret").classList.toggle("is-invalid", Boolean(again));
    $("confirm-error").textContent = again ? errorText(err) : "";
    $("confirm-what").textContent = state.lang === "zh" ? ERROR_ZH.confirmation_required : err.message;
    let answer = null;
    const submit = (event) => { event.preventDefault(); answer = $("confirm-secret").value; modal("confirm-modal").hide(); };
    $("confirm-form").addEventListener("submit", submit);
    box.addEventListener("shown.bs.modal", () => $("confirm-secret").focus(), { once: true });
    box.addEventListener("hidden.bs.modal", () => {
      $("confirm-form").removeEventListener("submit", submit);
      $("confirm-secret").value = "";
      resolve(answer || null);
    }, { once: true });
    modal("confirm-modal").show();
  });
}

// A yes/no dialog for Delete, Restore and bulk actions: resolves true only on the red button.
function ask(titleKey, titleEn, bodyKey, bodyEn, okKey, okEn) {
  return new Promise((resolve) => {
    const box = $("ask-modal");
    $("ask-title").innerHTML = label(titleKey, titleEn);
    $("ask-body").innerHTML = label(bodyKey, bodyEn);
    $("ask-ok").innerHTML = label(okKey, okEn);
    let answer = false;
    const ok = () => { answer = true; modal("ask-modal").hide(); };
    $("ask-ok").addEventListener("click", ok);
    box.addEventListener("hidden.bs.modal", () => { $("ask-ok").removeEventListener("click", ok); resolve(answer); }, { once: true });
    modal("ask-modal").show();
  });
}

// --- the API ---------------------------------------------------------------------------------

async function call(method, path, body, headers) {
  const all = { Accept: "application/json", ...headers };
  if (body !== undefined) all["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) all["X-CSRF-Token"] = state.csrf;
  let response;
  try {
    response = await fetch(path, { method, headers: all, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (_) {
    throw new ApiError(0, "network", "the server cannot be reached", null);
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.ok) return data;
  const error = data && data.error ? data.error : { code: "error", message: `HTTP ${response.status}`, details: null };
  throw new ApiError(response.status, error.code, error.message, error.details);
}

async function api(method, path, body, options = {}) {
  let headers = {};
  let again = false;
  for (;;) {
    try {
      return await call(method, path, body, headers);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.status === 401 && path !== "/api/v1/session") { showLogin(); throw new ShownError("login needed"); }
      if (err.code !== "confirmation_required" || options.noConfirm) throw err;
      const secret = await askSecret(err, again);
      if (secret === null) throw new ShownError("not confirmed");
      headers = { "X-Confirm": secret };
      again = true;
    }
  }
}

// --- navigation and live updates --------------------------------------------------------------

function show(view) {
  document.querySelectorAll("main > section").forEach((s) => { s.hidden = s.id !== `${view}-view`; });
  document.querySelectorAll("#nav .nav-link").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === `#${view}`));
}

// Also forgets what the last user saw, so the next one at this browser finds none of it.
function showLogin() {
  state.user = null; state.cursor = null; state.config = null; state.openMessage = null; state.channels = [];
  stopLive();
  $("nav").hidden = true; $("logout").hidden = true; $("who").textContent = "";
  $("new-key").hidden = true; $("new-hook").hidden = true; $("totp-setup").hidden = true;
  ["messages-body", "channels-body", "keys-body", "send-channels", "message-detail", "admin-summary", "admin-components",
    "admin-queues", "admin-users", "admin-alerts", "admin-jobs", "admin-backups", "admin-events", "admin-audit", "admin-keys",
    "backup-result", "config-summary", "admin-config-versions", "config-result", "schedules-body", "schedule-channels",
    "hooks-body", "hook-channels", "preview-hooks", "preview-result", "new-hook-url", "new-key-value", "tasks-body",
    "chart-hourly", "chart-success", "chart-depth", "key-examples", "totp-qr", "totp-secret", "admin-status", "admin-logs"].forEach((id) => { $(id).innerHTML = ""; });
  $("backup-result").hidden = true; $("config-result").hidden = true;
  document.querySelectorAll("form").forEach((f) => { f.reset(); clearFieldErrors(f); });
  show("login");
}

const ADMIN_VIEWS = new Set(["admin", "dashboard", "tasks"]);
async function route() {
  if (!state.user) return;
  const hash = location.hash || "#send";
  const detail = /^#\/messages\/(\d+)$/.exec(hash);
  let view = detail ? "message" : hash.replace(/^#\/?/, "");
  if (view === "keys") view = "account";
  if (!document.getElementById(`${view}-view`) || view === "login") view = "send";
  if (ADMIN_VIEWS.has(view) && state.user.role !== "admin") view = "send";  // left there by an admin who logged out
  show(view);
  state.openMessage = detail ? Number(detail[1]) : null;
  if (view === "send") await loadChannelChoices("send-channels");
  if (view === "messages") await loadMessages(true);
  if (view === "message") await showMessage(state.openMessage);
  if (view === "schedules") await loadSchedules();
  if (view === "hooks") await loadHooks();
  if (view === "channels") await loadChannels();
  if (view === "account") await loadAccount();
  if (view === "dashboard") await loadDashboard();
  if (view === "tasks") await loadTasks(true);
  if (view === "admin") await loadAdmin();
}

function updateLive() {
  const mode = state.stream && state.stream.readyState !== EventSource.CLOSED ? "live_on" : state.polling ? "live_poll" : "";
  $("live").hidden = !mode;
  if (mode) { $("live").innerHTML = label(mode, mode === "live_on" ? "live" : "polling"); $("live").className = `badge ${mode === "live_on" ? "text-bg-success" : "text-bg-warning"}`; }
}

function stopLive() {
  if (state.stream) state.stream.close();
  state.stream = null;
  clearInterval(state.polling);
  state.polling = null;
  updateLive();
}

// Server-Sent Events from the API; when the stream is refused or gone for good (a cap, a proxy
// that buffers), polling every 5 s keeps the open list and message page current instead.
function startLive() {
  stopLive();
  const stream = new EventSource("/api/v1/events/stream");
  state.stream = stream;
  stream.addEventListener("open", updateLive);
  stream.addEventListener("message", (event) => onMessageEvent(JSON.parse(event.data)));
  stream.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    if (alert.state === "firing") toast("warning", `${alert.rule}: ${alert.message}`);
  });
  stream.addEventListener("error", () => {
    if (stream.readyState === EventSource.CLOSED && state.stream === stream && state.user) {
      state.stream = null;
      state.polling = setInterval(() => refreshVisible().catch(() => {}), 5000);
    }
    updateLive();
  });
}

function onMessageEvent(event) {
  const cell = document.querySelector(`#messages-body tr[data-message="${event.message_id}"] .status-cell`);
  if (cell && event.message_status) cell.innerHTML = statusBadge(event.message_status);
  if (!cell && !$("messages-view").hidden && !state.cursor) scheduleReload(() => loadMessages(true));
  if (state.openMessage === event.message_id) scheduleReload(() => showMessage(event.message_id));
}

// Several events of one message arrive together: one reload after the burst.
function scheduleReload(work) {
  clearTimeout(state.reloadTimer);
  state.reloadTimer = setTimeout(() => work().catch(report), 250);
}

async function refreshVisible() {
  if (!$("messages-view").hidden) await loadMessages(true);
  if (state.openMessage && !$("message-view").hidden) await showMessage(state.openMessage);
}

async function start() {
  translate();
  try {
    state.user = await call("GET", "/api/v1/me");
  } catch (_) {
    return showLogin();
  }
  $("nav").hidden = false; $("logout").hidden = false;
  $("who").textContent = state.user.username;
  document.querySelectorAll(".admin-only").forEach((el) => { el.hidden = state.user.role !== "admin"; });
  startLive();
  await route();
}

// --- messages ----------------------------------------------------------------------------------

async function loadChannelList() {
  state.channels = (await api("GET", "/api/v1/channels?limit=200")).items;
  return state.channels;
}

// Channels as check boxes (no Ctrl-click): the defaults ticked.
async function loadChannelChoices(containerId) {
  const channels = await loadChannelList();
  $(containerId).innerHTML = channels.map((c) => `<div class="form-check form-check-inline m-0">
    <input class="form-check-input" type="checkbox" name="channels" value="${esc(c.name)}" id="${containerId}-${c.id}" ${c.default ? "checked" : ""}>
    <label class="form-check-label" for="${containerId}-${c.id}">${esc(c.name)} <span class="text-body-secondary small">${esc(c.type)}</span></label></div>`).join("")
    || `<span class="text-body-secondary small">${label("none", "none")}</span>`;
}

function fillFilters() {
  const status = $("filter-status").value;
  $("filter-status").innerHTML = `<option value="" data-i18n="all_statuses" data-en="All statuses">${esc(t("all_statuses", "All statuses"))}</option>`
    + MESSAGE_STATUSES.map((s) => `<option value="${s}" data-i18n="st_${s}" data-en="${s.replace(/_/g, " ")}">${esc(t(`st_${s}`, s.replace(/_/g, " ")))}</option>`).join("");
  $("filter-status").value = status;
  const channel = $("filter-channel").value;
  $("filter-channel").innerHTML = `<option value="" data-i18n="all_channels" data-en="All channels">${esc(t("all_channels", "All channels"))}</option>`
    + state.channels.map((c) => `<option value="${esc(c.name)}">${esc(c.name)}</option>`).join("");
  $("filter-channel").value = channel;
}

// The first page replaces the rows (so overlapping reloads cannot duplicate them); "More" appends.
// Status and channel filter on the server; the text filters the titles loaded.
async function loadMessages(fromStart) {
  if (fromStart) { await loadChannelList(); fillFilters(); }
  const query = new URLSearchParams({ limit: "50" });
  if ($("filter-status").value) query.set("status", $("filter-status").value);
  if ($("filter-channel").value) query.set("channel", $("filter-channel").value);
  if (!fromStart && state.cursor) query.set("cursor", state.cursor);
  const page = await api("GET", `/api/v1/messages?${query}`);
  state.messages = fromStart ? page.items : [...state.messages, ...page.items];
  state.cursor = page.next_cursor;
  $("more-messages").hidden = !page.next_cursor;
  drawMessages();
}

function drawMessages() {
  const text = $("filter-text").value.trim().toLowerCase();
  const shown = state.messages.filter((m) => !text || String(m.title).toLowerCase().includes(text));
  $("messages-body").innerHTML = rowsOr(shown.map((m) => `<tr data-message="${m.id}"><td>${m.id}</td>
    <td class="text-break"><a href="#/messages/${m.id}">${esc(m.title) || "—"}</a></td>
    <td class="status-cell">${statusBadge(m.status)}</td><td>${when(m.created_at)}</td>
    <td class="text-end">${button("show", m.id, "details", "Details")}</td></tr>`), 5);
  labelCells($("messages-view"));
}

function factRow(key, en, html) { return html ? `<dt class="col-sm-3">${label(key, en)}</dt><dd class="col-sm-9 text-break">${html}</dd>` : ""; }

function eventDetail(detail) {
  if (!detail || typeof detail !== "object") return detail ? esc(detail) : "";
  return Object.entries(detail).filter(([, v]) => v !== null && v !== "").map(([k, v]) => `<span class="me-2"><span class="text-body-secondary">${esc(k.replace(/_/g, " "))}:</span> ${esc(typeof v === "object" ? JSON.stringify(v) : v)}</span>`).join("");
}

// Only the actions that apply: Retry after a failure, Cancel before the end, Recall and Edit once sent.
function messageActions(m) {
  const failed = m.deliveries.some((d) => ["failed", "dead"].includes(d.status));
  const sent = m.deliveries.some((d) => d.status === "sent");
  const out = [];
  if (failed && FINAL.has(m.status) && m.status !== "cancelled") out.push(button("retry", m.id, "retry", "Retry", "btn-outline-primary"));
  if (!FINAL.has(m.status)) out.push(button("cancel", m.id, "cancel", "Cancel", "btn-outline-danger"));
  const recalled = m.events.some((e) => e.type === "recalled");
  if (sent && !recalled) out.push(button("recall", m.id, "recall", "Recall", "btn-outline-danger"));
  return out.join(" ");
}

async function showMessage(id, changed) {
  const m = changed || await api("GET", `/api/v1/messages/${id}`);
  if (state.openMessage !== m.id) return;  // another page opened meanwhile
  // A recall's or edit's per-delivery answer stays beside its delivery while the page is open,
  // through the reloads that the live events of that change bring.
  if (changed) state.changes = { id: m.id, byDelivery: Object.fromEntries(m.deliveries.filter((d) => d.change).map((d) => [d.id, d.change])) };
  else if (state.changes && state.changes.id === m.id) m.deliveries.forEach((d) => { d.change = state.changes.byDelivery[d.id]; });
  const change = (c) => (c ? `<div class="small change">${label(c.action, c.action)}: ${statusBadge(c.status)} ${esc(c.detail || "")}</div>` : "");
  const deliveries = m.deliveries.map((d) => `<tr><td>${esc(d.channel.name)} <span class="text-body-secondary small">${esc(d.channel.type)}</span></td>
    <td>${statusBadge(d.status)}${change(d.change)}</td><td>${d.attempts}</td><td>${d.response_code ?? ""}</td>
    <td class="text-break mp-wrap">${esc(d.last_error || "")}</td><td>${when(d.sent_at)}</td></tr>`);
  const events = m.events.map((e) => `<li class="list-group-item"><div class="d-flex flex-wrap gap-2"><span class="text-body-secondary small">${when(e.at)}</span>
    <strong>${label(`ev_${e.type}`, EVENT_EN[e.type] || e.type.replace(/_/g, " "))}</strong></div><div class="small text-break">${eventDetail(e.detail)}</div></li>`).join("");
  const fetched = m.fetched && (m.fetched.text || m.fetched.error)
    ? `<details class="mb-3"><summary>${label("fetched_text", "Fetched text")} ${m.fetched.title ? `— ${esc(m.fetched.title)}` : ""}</summary>
       <div class="mp-prewrap small border rounded p-2 mt-2">${esc(m.fetched.text || m.fetched.error)}</div></details>` : "";
  const ai = m.ai ? `<div class="mb-3"><h2 class="h6">${label("ai_result", "AI result")} <span class="text-body-secondary small">${esc(m.ai.task || "")} ${esc(m.ai.provider || "")}</span></h2>
       <div class="mp-prewrap border rounded p-2 bg-body">${esc(m.ai.result || m.ai.label || m.ai.error || "")}</div></div>` : "";
  const sent = m.deliveries.some((d) => d.status === "sent");
  const edit = sent ? `<details class="mb-3"><summary>${label("edit", "Edit")}</summary><form id="edit-form" data-id="${m.id}" class="mt-2" novalidate>
      <input class="form-control mb-2" name="title" value="${esc(m.title)}" maxlength="256"><div class="invalid-feedback" data-error-for="title"></div>
      <textarea class="form-control mb-2" name="body" rows="3">${esc(m.body)}</textarea><div class="invalid-feedback" data-error-for="body"></div>
      <button type="submit" class="btn btn-sm btn-primary" data-i18n="save_edit" data-en="Save the edit">${esc(t("save_edit", "Save the edit"))}</button></form></details>` : "";
  const link = safeHref(m.url);
  $("message-detail").dataset.id = m.id;
  $("message-detail").innerHTML = `<div class="card shadow-sm mb-3"><div class="card-body">
    <div class="d-flex flex-wrap align-items-start gap-2 mb-2"><h1 class="h4 mb-0 me-auto text-break" id="message-title">#${m.id} ${esc(m.title)}</h1>
      <span id="message-status">${statusBadge(m.status)}</span>${FINAL.has(m.status) ? "" : `<span class="spinner-border spinner-border-sm text-primary" role="status" title="${esc(t("in_flight", "in flight"))}"></span>`}</div>
    <dl class="row small mb-2">${factRow("link_label", "Link", link ? `<a href="${esc(link)}" rel="noopener noreferrer" target="_blank">${esc(link)}</a>` : "")}
      ${factRow("priority_of", "Priority", `${m.priority} / 5`)}
      ${factRow("send_time", "Send time", when(m.send_at || m.created_at))}
      ${factRow("created", "Created", when(m.created_at))}</dl>
    <div id="message-body" class="mp-body border-top pt-2">${renderBody(m.body, m.format)}</div>
    <div id="message-actions" class="d-flex flex-wrap gap-2 mt-2">${messageActions(m)}</div></div></div>
    ${ai}${fetched}${edit}
    <div class="card shadow-sm mb-3"><div class="card-body"><h2 class="h6">${label("deliveries", "Deliveries")}</h2>
    <div class="table-responsive"><table class="table table-sm align-middle mb-0 mp-cards"><thead><tr><th>${label("channel", "Channel")}</th><th>${label("status", "Status")}</th>
      <th>${label("attempts", "Attempts")}</th><th>${label("response_code", "Response code")}</th><th>${label("last_error", "Last error")}</th><th>${label("sent_at", "Sent at")}</th></tr></thead>
      <tbody id="message-deliveries">${rowsOr(deliveries, 6)}</tbody></table></div></div></div>
    <div class="card shadow-sm"><div class="card-body"><h2 class="h6">${label("timeline", "Timeline")}</h2><ol class="list-group list-group-flush" id="message-timeline">${events}</ol></div></div>`;
  labelCells($("message-detail"));
}

async function changeMessage(id, method, body, form) {
  const m = await api(method, `/api/v1/messages/${id}`, body);
  toast("success", t(method === "DELETE" ? "recalled" : "edited", method === "DELETE" ? "Recalled" : "Edited"));
  if (form) clearFieldErrors(form);
  await showMessage(id, m);
}

// --- schedules and hooks -----------------------------------------------------------------------

async function loadSchedules() {
  const page = await api("GET", "/api/v1/schedules?limit=200");
  const rule = (s) => (s.cron ? `<code>${esc(s.cron)}</code> ${esc(s.timezone)}` : `${label("every", "every")} ${s.every_seconds} ${label("seconds", "s")}`);
  const fires = (s) => s.recent_fires.slice(0, 3).map((f) => `<div>${when(f.fire_at)} ${statusBadge(f.outcome)}</div>`).join("");
  $("schedules-body").innerHTML = rowsOr(page.items.map((s) => `<tr data-schedule="${s.id}"><td>${s.id}</td><td>${esc(s.name)}</td><td>${rule(s)}</td>
    <td class="next-runs">${s.next_runs.slice(0, 3).map((r) => `<div>${when(r)}</div>`).join("") || label("off", "off")}</td><td>${fires(s)}</td>
    <td class="text-end text-nowrap">${button("run-schedule", s.id, "run_now", "Run now")}
    ${s.enabled ? button("disable-schedule", s.id, "disable", "Disable") : button("enable-schedule", s.id, "enable", "Enable")}
    ${button("delete-schedule", s.id, "delete", "Delete", "btn-outline-danger")}</td></tr>`), 6);
  labelCells($("schedules-view"));
  await loadChannelChoices("schedule-channels");
}

async function loadHooks() {
  const page = await api("GET", "/api/v1/hooks?limit=200");
  $("hooks-body").innerHTML = rowsOr(page.items.map((h) => `<tr><td>${h.id}</td><td>${esc(h.name)}</td>
    <td>${esc(h.preset || (h.template && h.template.title) || "")}</td><td>${when(h.last_used_at)}</td>
    <td class="text-break">${esc(h.last_error || "")}</td><td class="text-end">${button("delete-hook", h.id, "delete", "Delete", "btn-outline-danger")}</td></tr>`), 6);
  $("preview-hooks").innerHTML = page.items.map((h) => `<option value="${h.id}">${esc(h.name)}</option>`).join("");
  labelCells($("hooks-view"));
  await loadChannelChoices("hook-channels");
}

// --- channels: forms generated from each type's JSON schema in /openapi.json -------------------

async function loadChannelSchemas() {
  if (state.channelSchemas) return state.channelSchemas;
  const doc = await api("GET", "/openapi.json");
  const all = doc.components.schemas;
  const schemas = {};
  for (const [name, schema] of Object.entries(all)) if (name.startsWith("ChannelConfig_")) schemas[name.slice(14)] = schema;
  schemas.group = { properties: { members: { type: "array", items: { type: "string" }, description: "The channels of this group, by name or id." } }, required: ["members"] };
  state.channelSchemas = { types: schemas, refs: all };
  $("channel-types").innerHTML = Object.keys(schemas).map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
  drawChannelFields();
  return state.channelSchemas;
}

// A property's own schema: $ref resolved, a nullable anyOf reduced to its non-null branch.
function fieldSchema(prop) {
  let p = prop;
  if (p.$ref) p = { ...state.channelSchemas.refs[p.$ref.split("/").pop()], ...p };
  if (p.anyOf) {
    // Of several branches a string one wins: a text box takes any of them (an id or a name).
    const branch = p.anyOf.find((b) => b.type === "string") || p.anyOf.find((b) => b.type !== "null") || {};
    p = { ...(branch.$ref ? state.channelSchemas.refs[branch.$ref.split("/").pop()] : branch), ...p, anyOf: undefined };
  }
  return p;
}

function humanize(name) { return name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase()); }

function drawChannelFields(values = {}) {
  const type = $("channel-types").value;
  const schema = state.channelSchemas.types[type] || { properties: {} };
  const required = new Set(schema.required || []);
  const editing = Boolean(state.editing);
  $("channel-config").innerHTML = Object.entries(schema.properties || {}).map(([name, raw]) => {
    const p = fieldSchema(raw);
    const id = `cfg-${name}`;
    const fieldName = `config.${name}`;
    const mark = required.has(name) ? ` <span class="text-danger" title="${esc(t("required", "required"))}">*</span>` : "";
    const help = p.description ? `<div class="form-text">${esc(p.description)}</div>` : "";
    const current = values[name];
    const feedback = `<div class="invalid-feedback" data-error-for="${esc(fieldName)}"></div>`;
    if (p.type === "boolean") {
      const checked = current ?? p.default ?? false;
      return `<div class="col-12 col-md-6"><div class="form-check"><input class="form-check-input" type="checkbox" id="${id}" name="${esc(fieldName)}" data-kind="boolean" ${checked ? "checked" : ""}>
        <label class="form-check-label" for="${id}">${esc(humanize(name))}</label>${help}${feedback}</div></div>`;
    }
    let input;
    const placeholder = p.default !== undefined && p.default !== null ? String(typeof p.default === "object" ? JSON.stringify(p.default) : p.default) : "";
    if (p.enum) {
      input = `<select class="form-select" id="${id}" name="${esc(fieldName)}" data-kind="text">${required.has(name) ? "" : '<option value=""></option>'}
        ${p.enum.map((v) => `<option ${String(current ?? p.default) === String(v) ? "selected" : ""}>${esc(v)}</option>`).join("")}</select>`;
    } else if (p.type === "array") {
      input = `<textarea class="form-control" id="${id}" name="${esc(fieldName)}" data-kind="array" rows="2" placeholder="${esc(t("one_per_line", "one per line"))}">${esc(Array.isArray(current) ? current.join("\n") : "")}</textarea>`;
    } else if (p.type === "object") {
      input = `<textarea class="form-control font-monospace" id="${id}" name="${esc(fieldName)}" data-kind="object" rows="2" placeholder="{}">${current ? esc(JSON.stringify(current)) : ""}</textarea>`;
    } else {
      const secret = Boolean(raw.writeOnly || p.writeOnly);
      const kind = p.type === "integer" || p.type === "number" ? "number" : "text";
      const inputType = secret ? "password" : kind === "number" ? "number" : "text";
      const hint = secret && editing ? t("keep_secret", "leave empty to keep") : placeholder;
      const value = secret ? "" : current ?? "";
      input = `<input class="form-control" id="${id}" name="${esc(fieldName)}" type="${inputType}" data-kind="${kind}" ${secret ? 'autocomplete="new-password" data-secret="1"' : 'autocomplete="off"'}
        value="${esc(value)}" placeholder="${esc(hint)}" ${required.has(name) && !(secret && editing) ? "required" : ""}>`;
    }
    const reveal = input.includes('type="password"');  // a masked one-line secret can be shown
    if (reveal) input = `<div class="input-group has-validation">${input}<button type="button" class="btn btn-outline-secondary" data-reveal="${id}" data-i18n="show" data-en="Show">${esc(t("show", "Show"))}</button>${feedback}</div>`;
    return `<div class="col-12 col-md-6"><label class="form-label" for="${id}">${esc(humanize(name))}${mark}</label>${input}${help}${reveal ? "" : feedback}</div>`;
  }).join("");
}

// The config typed into the generated fields. When editing, only what changed is sent (the API
// merges it): an emptied field becomes null (removed); an empty secret keeps the stored one.
function channelConfig(form) {
  const config = {};
  const before = state.editing ? state.editing.config || {} : {};
  for (const el of form.querySelectorAll("[name^='config.']")) {
    const name = el.name.slice(7);
    let value;
    if (el.dataset.kind === "boolean") value = el.checked;
    else if (!el.value.trim()) { if (state.editing && !el.dataset.secret && before[name] !== undefined && before[name] !== null) config[name] = null; continue; }
    else if (el.dataset.kind === "number") value = Number(el.value);
    else if (el.dataset.kind === "array") value = el.value.split(/\n|,/).map((v) => v.trim()).filter(Boolean);
    else if (el.dataset.kind === "object") {
      try { value = JSON.parse(el.value); } catch (err) {
        throw new ApiError(422, "invalid_field", `config.${name}: ${err.message}`, [{ field: `config.${name}`, message: t("json_object", "a JSON object") }]);
      }
    } else value = el.value.trim();
    if (state.editing && JSON.stringify(before[name]) === JSON.stringify(value)) continue;
    if (el.dataset.kind === "boolean" && !state.editing && value === false && !el.defaultChecked) continue;
    config[name] = value;
  }
  return config;
}

function maskedTarget(c) {
  const config = c.config || {};
  const key = TARGET_FIELDS.find((k) => config[k] !== undefined && config[k] !== null && config[k] !== "");
  const value = key ? config[key] : Object.values(config).find((v) => typeof v === "string" && v);
  return Array.isArray(value) ? value.join(", ") : value || "";
}

async function loadChannels() {
  await loadChannelSchemas();
  const channels = await loadChannelList();
  const admin = state.user.role === "admin";
  $("channels-body").innerHTML = rowsOr(channels.map((c) => `<tr data-channel="${c.id}"><td>${c.id}</td><td>${esc(c.name)}</td><td>${esc(c.type)}</td>
    <td class="text-break mp-target"><code>${esc(maskedTarget(c))}</code></td><td>${c.default ? "✓" : ""}</td>
    <td class="text-end"><div class="d-flex flex-wrap gap-1 justify-content-end">${button("test", c.id, "test", "Test", "btn-outline-primary")}
    ${button("edit-channel", c.id, "edit", "Edit")}
    ${admin ? `${button("pause-channel", c.id, "pause", "Pause")} ${button("resume-channel", c.id, "resume", "Resume")}` : ""}
    ${button("delete-channel", c.id, "delete", "Delete", "btn-outline-danger")}</div><div class="test-result small mt-1 text-break" hidden></div></td></tr>`), 6);
  labelCells($("channels-view"));
}

function startChannelEdit(id) {
  const c = state.channels.find((ch) => ch.id === Number(id));
  if (!c) return;
  state.editing = c;
  const form = $("channel-form");
  clearFieldErrors(form);
  form.elements.name.value = c.name;
  $("channel-types").value = c.type;
  $("channel-types").disabled = true;
  $("channel-default").checked = c.default;
  drawChannelFields(c.config || {});
  $("channel-form-title").innerHTML = label("edit_channel", "Edit channel");
  $("channel-submit").innerHTML = label("save", "Save");
  $("channel-cancel-edit").hidden = false;
  form.scrollIntoView({ block: "start" });
}

function endChannelEdit() {
  state.editing = null;
  const type = $("channel-types").value;
  $("channel-form").reset();
  $("channel-types").disabled = false;
  $("channel-types").value = type;  // the next channel is often of the same type
  drawChannelFields();
  $("channel-form-title").innerHTML = label("new_channel", "New channel");
  $("channel-submit").innerHTML = label("create", "Create");
  $("channel-cancel-edit").hidden = true;
}

async function testChannel(id, el) {
  const slot = el.closest("td").querySelector(".test-result");
  const r = await api("POST", `/api/v1/channels/${id}/test`);
  const good = ["sent", "ok"].includes(r.status);
  slot.hidden = false;
  slot.className = `test-result small mt-1 text-break ${good ? "text-success" : "text-danger"}`;
  slot.innerHTML = `${statusBadge(r.status)} ${r.response_code ? `HTTP ${esc(r.response_code)} ` : ""}${esc(r.detail || "")}`;
  toast(good ? "success" : "danger", `${t("test_result", "Test")}: ${t(`st_${r.status}`, r.status)}${r.detail ? ` — ${r.detail}` : ""}`);
}

// --- account: password, TOTP, keys -------------------------------------------------------------

async function loadAccount() {
  state.user = await api("GET", "/api/v1/me");
  $("totp-state").innerHTML = state.user.totp_enabled ? label("totp_on", "On: sensitive actions accept a code.") : label("totp_off_state", "Off.");
  $("totp-enrol").hidden = state.user.totp_enabled;
  $("totp-remove").hidden = !state.user.totp_enabled;
  const allowed = state.user.role === "admin" ? ALL_SCOPES : ALL_SCOPES.filter((s) => s !== "admin");
  $("key-scopes").innerHTML = allowed.map((s) => `<div class="form-check m-0"><input class="form-check-input" type="checkbox" name="scopes" value="${s}" id="scope-${s.replace(":", "-")}" ${s === "admin" ? "" : "checked"}>
    <label class="form-check-label" for="scope-${s.replace(":", "-")}"><code>${s}</code></label></div>`).join("");
  await loadKeys();
  drawExamples($("new-key-value").textContent || "<API_KEY>");
}

async function loadKeys() {
  const keys = (await api("GET", "/api/v1/keys?limit=200")).items.filter((k) => k.user_id === state.user.id);
  $("keys-body").innerHTML = rowsOr(keys.map((k) => `<tr><td>${k.id}</td><td>${esc(k.name)}</td><td><code>${esc(k.prefix)}</code></td>
    <td>${k.scopes.map((s) => `<span class="badge text-bg-light border me-1">${esc(s)}</span>`).join("")}</td><td>${k.expires_at ? when(k.expires_at) : label("never", "never")}</td>
    <td>${when(k.last_used_at)}</td><td class="text-end">${button("delete-key", k.id, "delete", "Delete", "btn-outline-danger")}</td></tr>`), 7);
  labelCells($("account-view"));
}

function drawExamples(key) {
  const origin = location.origin;
  $("key-examples").textContent = `# ${t("curl_example", "Send with curl")}
curl -X POST ${origin}/api/v1/messages \\
  -H "Authorization: Bearer ${key}" \\
  -H "Content-Type: application/json" \\
  -d '{"title": "Hello", "body": "from curl", "priority": 3}'

# ${t("push_example", "message-pusher compatible URL")}
curl "${origin}/push/${state.user.username}?token=${key}&title=Hello&description=from+curl"`;
}

async function enrolTotp() {
  const enrolled = await api("POST", "/api/v1/me/totp");
  $("totp-setup").hidden = false;
  $("totp-secret").textContent = enrolled.secret;
  $("totp-qr").innerHTML = qrSvg(enrolled.provisioning_uri);
  $("totp-form").elements.code.focus();
}

// --- dashboard ---------------------------------------------------------------------------------

// The drawing's width in px: its box's, or (while the view is still hidden) the page's less the
// card's padding; never wider than it will be shown, so the labels are never scaled up.
function chartWidth(id) {
  const box = $(id).clientWidth || ($("dashboard-view").clientWidth || document.body.clientWidth) - 48;
  return Math.max(280, box);
}

let dashboardStats = null;

async function loadDashboard() {
  dashboardStats = await api("GET", "/api/v1/admin/stats/charts");
  drawDashboard(dashboardStats);
  await loadNodes();
  // The first drawing may have measured the view before it had its width: draw again once laid out.
  requestAnimationFrame(() => drawDashboard(dashboardStats));
}

// Every process of the cluster (GET /api/v1/admin/nodes): a root and its workers per node.
async function loadNodes() {
  const nodes = await api("GET", "/api/v1/admin/nodes");
  $("nodes-body").innerHTML = rowsOr(nodes.items.map((n) => `<tr><td>${esc(n.node_name)} <span class="text-body-secondary small">${esc(n.host)}</span></td>
    <td>${esc(n.role)}</td><td>${n.kind === "root" ? label("root", "root") : esc(n.process_index ?? "")}</td><td>${esc(n.pid)}</td>
    <td>${statusBadge(n.state)}</td><td>${when(n.last_seen)}</td><td>${esc(n.config_version ?? "")}</td></tr>`), 7);
  const c = nodes.cluster || {};
  const roles = Object.entries(c.roles || {}).map(([role, n]) => `${role} ${n}`).join(", ");
  $("nodes-summary").textContent = [`${t("nodes_n", "nodes")}: ${c.nodes ?? 0}`, `${t("processes_n", "processes")}: ${c.processes ?? 0}${roles ? ` (${roles})` : ""}`,
    `${t("stale_processes", "stale processes")}: ${c.stale_processes ?? 0}`].join(" · ");
  labelCells($("dashboard-view"));
}

function drawDashboard(s) {
  const hours = s.messages_per_hour.hours.map((iso) => `${pad(new Date(iso).getHours())}:00`);
  const legend = Object.fromEntries(Object.keys(STATUS_COLOURS).map((k) => [k, t(`st_${k}`, k.replace(/_/g, " "))]));
  $("chart-hourly").innerHTML = stackedBars(hours, s.messages_per_hour.by_status, STATUS_COLOURS, legend, chartWidth("chart-hourly")) + `<div class="small text-body-secondary">${esc(zoneName())}</div>`;
  $("chart-success").innerHTML = rateBars(s.delivery_success, { none: t("no_data", "no data yet"), sent: t("sent_n", "sent"), failed: t("failed_n", "failed") });
  const depthLabels = s.queue_depth.at.map((iso) => { const d = new Date(iso); return `${pad(d.getHours())}:${pad(d.getMinutes())}`; });
  const mailboxes = Object.entries(s.queue_depth.by_mailbox).map(([name, v]) => `<span class="me-3 text-nowrap">${esc(name)}: <b>${v[v.length - 1]}</b></span>`).join("");
  $("chart-depth").innerHTML = lineChart(depthLabels, s.queue_depth.total, chartWidth("chart-depth")) + `<div class="small">${mailboxes}</div>`;
  applyStyles($("dashboard-view"));
}

// --- tasks (the mailbox entries) ----------------------------------------------------------------

// The mailboxes and the pauses in force come from GET /api/v1/admin/pauses; the filters are
// drawn once, the pause buttons on every load.
async function fillTaskFilters() {
  const pauses = await api("GET", "/api/v1/admin/pauses");
  const names = pauses.known_mailboxes || MAILBOXES;
  const paused = new Set(pauses.mailboxes.map((m) => m.name));
  if (!$("task-mailbox").options.length) {
    $("task-mailbox").innerHTML = `<option value="" data-i18n="all_mailboxes" data-en="All mailboxes">${esc(t("all_mailboxes", "All mailboxes"))}</option>`
      + names.map((m) => `<option>${esc(m)}</option>`).join("");
    $("task-state").innerHTML = `<option value="" data-i18n="all_states" data-en="All states">${esc(t("all_states", "All states"))}</option>`
      + TASK_STATES.map((s) => `<option value="${s}" data-i18n="st_${s}" data-en="${s}">${esc(t(`st_${s}`, s))}</option>`).join("");
  }
  $("mailbox-pauses").innerHTML = names.map((m) => `<div class="btn-group btn-group-sm" role="group"><span class="btn btn-light disabled">${esc(m)}
    ${paused.has(m) ? statusBadge("paused") : ""}</span>
    ${paused.has(m) ? button("resume-mailbox", m, "resume", "Resume", "btn-outline-success") : button("pause-mailbox", m, "pause", "Pause", "btn-outline-warning")}</div>`).join("");
}

function taskQuery() {
  const form = new FormData($("task-filter"));
  const query = new URLSearchParams({ limit: "50" });
  for (const name of ["mailbox", "state", "message_id"]) if (String(form.get(name) || "").trim()) query.set(name, String(form.get(name)).trim());
  return query;
}

async function loadTasks(fromStart) {
  await fillTaskFilters();
  const query = taskQuery();
  if (!fromStart && state.taskCursor) query.set("cursor", state.taskCursor);
  const page = await api("GET", `/api/v1/tasks?${query}`);
  const rows = page.items.map((k) => `<tr data-task="${k.id}"><td>${k.id}</td><td>${esc(k.mailbox)}</td><td>${esc(k.kind)}</td><td>${statusBadge(k.state)}</td>
    <td>${k.attempts}/${k.max_attempts}</td><td>${when(k.available_at)}</td>
    <td>${k.message_id ? `<a href="#/messages/${k.message_id}">#${k.message_id}</a>` : ""}</td><td class="text-break mp-wrap">${esc(k.last_error || "")}</td>
    <td class="text-end text-nowrap">${["dead", "failed", "ready"].includes(k.state) ? button("retry-task", k.id, "retry", "Retry", "btn-outline-primary") : ""}
    ${["ready", "leased", "failed", "dead"].includes(k.state) ? button("cancel-task", k.id, "cancel", "Cancel", "btn-outline-danger") : ""}</td></tr>`);
  if (fromStart) $("tasks-body").innerHTML = rowsOr(rows, 9);
  else $("tasks-body").insertAdjacentHTML("beforeend", rows.join(""));
  state.taskCursor = page.next_cursor;
  $("more-tasks").hidden = !page.next_cursor;
  labelCells($("tasks-view"));
}

async function redrive() {
  if (!await ask("ask_redrive", "Re-drive dead tasks", "ask_redrive_body", "Every dead task matching the filter goes back in its queue.", "redrive", "Re-drive dead")) return;
  const query = taskQuery();
  const body = { state: "dead" };
  if (query.get("mailbox")) body.mailbox = query.get("mailbox");
  if (query.get("message_id")) body.message_id = Number(query.get("message_id"));
  const done = await api("POST", "/api/v1/tasks/retry", body);
  toast("success", `${t("retried", "Re-queued")}: ${done.retried ?? done.count ?? ""}`);
  await loadTasks(true);
}

async function taskAction(path, doneKey, doneEn) {
  await api("POST", path);
  toast("success", t(doneKey, doneEn));
}

// --- admin -------------------------------------------------------------------------------------

// Top to bottom, one after another: the first section that fails stops the rest, its error shown.
async function loadAdmin() {
  for (const load of [loadStatus, loadConfig, loadUsers, loadAllKeys, loadAlerts, loadJobs, loadBackups, loadEvents, loadAudit, loadLogs]) {
    if (!state.user) return;  // logged out meanwhile: fill nothing more into the hidden panel
    await load();
  }
  labelCells($("admin-view"));
}

async function loadStatus() {
  const s = await api("GET", "/api/v1/admin/status");
  const fact = (key, en, value) => `<span>${label(key, en)}: <b>${value}</b></span>`;
  $("admin-summary").innerHTML = [fact("accepting", "Accepting", yesNo(s.accepting)), fact("ready", "Ready", yesNo(s.ready)),
    fact("scheduler", "Scheduler", yesNo(s.scheduler_running)), fact("node", "Node", esc(s.node)),
    fact("uptime", "Uptime (s)", esc(s.uptime_seconds)), fact("config_version", "Config version", esc(s.config_version)),
  ].join("") + Object.entries(s.failing || {}).map(([part, why]) => `<span class="text-danger">${esc(part)}: ${esc(why)}</span>`).join("");
  $("admin-components").innerHTML = rowsOr(Object.entries(s.components).map(([name, c]) => `<tr><td>${esc(name)}</td>
    <td>${statusBadge(c.state)}</td><td>${c.restarts}</td><td>${yesNo(c.answering_pings)}</td>
    <td>${c.pool ? `${c.pool.in_flight}/${c.pool.workers}` : ""}</td><td class="text-break">${esc(c.last_error || "")}</td></tr>`), 6);
  $("admin-queues").innerHTML = rowsOr(s.mailbox.map((q) => `<tr><td>${esc(q.recipient)}</td><td>${statusBadge(q.state)}</td>
    <td>${q.count}</td><td>${q.oldest_ready_age_seconds ?? ""}</td></tr>`), 4);
  $("admin-status").textContent = JSON.stringify(s, null, 2);
}

// The run-time keys' current values, as JSON to edit: the form sends only the leaves changed.
async function loadConfig() {
  const config = await api("GET", "/api/v1/admin/config");
  const versions = await api("GET", "/api/v1/admin/config/versions?limit=50");
  state.config = config.values;
  $("config-values").value = JSON.stringify(config.values, null, 2);
  $("config-summary").innerHTML = `${label("config_version", "Config version")}: <b>${esc(config.version)}</b> · ${label("overrides", "Overrides")}: `
    + (Object.keys(config.overrides).length ? `<code>${esc(JSON.stringify(config.overrides))}</code>` : label("none", "none"));
  const changed = (diff) => Object.entries(diff).map(([key, [old, now]]) => `${esc(key)}: ${esc(JSON.stringify(old))} → ${esc(JSON.stringify(now))}`).join("<br>");
  const rollback = (version) => (version === config.version ? "" : button("rollback", version, "rollback", "Rollback"));
  $("admin-config-versions").innerHTML = versions.items.map((v) => `<tr><td>${v.version}</td><td>${when(v.at)}</td>
    <td>${esc(v.username)}</td><td>${esc(v.comment)}</td><td class="text-break">${changed(v.diff)}</td><td>${rollback(v.version)}</td></tr>`).join("")
    + `<tr><td>0</td><td></td><td></td><td>${label("file_alone", "the configuration file alone")}</td><td></td><td>${rollback(0)}</td></tr>`;
}

// Only what differs from the loaded values is sent; a key deleted from the text is reset (null).
function configChanges(loaded, edited) {
  const out = {};
  const isObject = (v) => v && typeof v === "object" && !Array.isArray(v);
  for (const key of new Set([...Object.keys(loaded), ...Object.keys(edited)])) {
    if (!(key in edited)) out[key] = null;
    else if (isObject(loaded[key]) && isObject(edited[key])) {
      const inner = configChanges(loaded[key], edited[key]);
      if (Object.keys(inner).length) out[key] = inner;
    } else if (JSON.stringify(loaded[key]) !== JSON.stringify(edited[key])) out[key] = edited[key];
  }
  return out;
}

function showConfigResult(done) {
  $("config-result").innerHTML = done.changed
    ? `${label("config_saved", "Saved as version")} <b>${esc(done.version)}</b> (${esc(done.comment)})`
    : `${label("config_unchanged", "No value changed; the current version is")} <b>${esc(done.version)}</b>`;
  $("config-result").hidden = false;
  toast("success", $("config-result").textContent);
}

async function saveConfig() {
  let edited;
  try { edited = JSON.parse($("config-values").value); } catch (err) {
    throw new ApiError(422, "invalid_field", `values: ${err.message}`, [{ field: "values", message: err.message }]);
  }
  const done = await api("PATCH", "/api/v1/admin/config", configChanges(state.config, edited));
  showConfigResult(done);
  await loadStatus();
  await loadConfig();
}

async function rollbackConfig(version) {
  const done = await api("POST", `/api/v1/admin/config/versions/${version}/rollback`);
  showConfigResult(done);
  await loadStatus();
  await loadConfig();
}

async function loadUsers() {
  const users = await api("GET", "/api/v1/users?limit=200");
  state.usernames = Object.fromEntries(users.items.map((u) => [u.id, u.username]));
  $("admin-users").innerHTML = users.items.map((u) => `<tr><td>${u.id}</td><td>${esc(u.username)}</td>
    <td>${label(`role_${u.role}`, u.role)}</td><td>${u.disabled ? label("disabled", "disabled") : label("enabled", "enabled")}</td>
    <td>${when(u.created_at)}</td><td class="text-end text-nowrap">${u.id === state.user.id ? "" : userActions(u)}</td></tr>`).join("");
}

// No buttons on one's own row: an admin who disabled or demoted themselves would be locked out.
function userActions(u) {
  return `${u.disabled ? button("enable", u.id, "enable", "Enable") : button("disable", u.id, "disable", "Disable")}
    ${u.role === "admin" ? button("make-user", u.id, "make_user", "Make user") : button("make-admin", u.id, "make_admin", "Make admin")}`;
}

async function patchUser(id, change) {
  await api("PATCH", `/api/v1/users/${id}`, change);
  toast("success", t("saved", "Saved"));
  await loadUsers();
  labelCells($("admin-view"));
}

async function loadAllKeys() {
  const keys = await api("GET", "/api/v1/keys?limit=200");
  $("admin-keys").innerHTML = rowsOr(keys.items.map((k) => `<tr><td>${k.id}</td><td>${esc((state.usernames || {})[k.user_id] || k.user_id)}</td><td>${esc(k.name)}</td>
    <td><code>${esc(k.prefix)}</code></td><td>${esc(k.scopes.join(", "))}</td><td>${when(k.last_used_at)}</td></tr>`), 6);
}

async function loadAlerts() {
  const alerts = await api("GET", "/api/v1/admin/alerts?limit=50");
  $("admin-alerts").innerHTML = rowsOr(alerts.items.map((a) => `<tr><td>${a.id}</td><td>${statusBadge(a.severity)}</td>
    <td>${statusBadge(a.state)}</td><td>${esc(a.rule)} (${esc(a.key)})</td><td class="text-break">${esc(a.message)}</td>
    <td>${a.count}</td><td>${when(a.last_at)}</td><td>${a.acknowledged_by ? esc(a.acknowledged_by) : button("ack", a.id, "ack", "Ack")}</td></tr>`), 8);
}

async function loadJobs() {
  const jobs = await api("GET", "/api/v1/admin/jobs");
  const run = (r) => `<li>#${r.id} ${statusBadge(r.outcome)} ${when(r.started_at)}
    ${r.duration_seconds === null ? "" : `(${r.duration_seconds} s)`} ${esc(r.error || "")}</li>`;
  $("admin-jobs").innerHTML = jobs.items.map((j) => `<tr data-job="${esc(j.name)}"><td>${esc(j.name)}</td>
    <td>${esc(j.schedule ? j.schedule.cron || j.schedule.every : "")} ${j.schedule && j.schedule.enabled ? "" : label("off", "off")}</td>
    <td>${when(j.next_run_at)}</td><td><ul class="list-unstyled mb-0">${j.last_runs.slice(0, 3).map(run).join("")}</ul></td>
    <td class="text-end">${button("run-job", j.name, "run_now", "Run now")}</td></tr>`).join("");
}

async function loadEvents() {
  const events = await api("GET", "/api/v1/admin/supervisor/events?limit=50");
  $("admin-events").innerHTML = rowsOr(events.items.map((e) => `<tr><td>${when(e.at)}</td><td>${esc(e.actor)}</td>
    <td>${esc(e.event)}</td><td class="text-break">${esc(e.detail)}</td></tr>`), 4);
}

// The backups API answers newest first, synchronously (201 once the copy is checked).
async function loadBackups() {
  const backups = await api("GET", "/api/v1/admin/backups");
  $("admin-backups").innerHTML = rowsOr(backups.items.map((b) => `<tr><td class="text-break">${esc(b.name)}</td><td>${b.bytes}</td>
    <td>${when(b.created_at)}</td><td class="text-end">${button("restore", b.name, "restore", "Restore", "btn-outline-danger")}</td></tr>`), 4);
}

function showBackupResult(html) { $("backup-result").innerHTML = html; $("backup-result").hidden = false; toast("success", $("backup-result").textContent); }

// A button that stays disabled while its call runs, so a second click cannot start it twice.
async function busy(el, work) {
  el.disabled = true;
  try { await work(); } finally { el.disabled = false; }
}

async function backUpNow() {
  const made = await api("POST", "/api/v1/admin/backups");
  showBackupResult(`${label("backup_taken", "Backup taken:")} <code>${esc(made.name)}</code> (${made.bytes})`
    + (made.removed && made.removed.length ? ` · ${label("rotated_out", "Rotated out:")} ${esc(made.removed.join(", "))}` : ""));
  await loadBackups();
  labelCells($("admin-view"));
}

// Asked first (the data since the backup is lost), then sensitive (X-Confirm). The whole panel is
// reloaded after, since everything in it came from the database just replaced.
async function restoreBackup(name) {
  if (!await ask("ask_restore", "Restore from this backup?", "ask_restore_body", "The database is replaced by this backup; every change since is lost.", "restore", "Restore")) return;
  const done = await api("POST", `/api/v1/admin/backups/${encodeURIComponent(name)}/restore`);
  showBackupResult(`${label("restored", "Restored from backup:")} <code>${esc(done.restored)}</code> (${done.duration_seconds} s)`);
  await loadAdmin();
}

// "POST /api/v1/channels/{channel_id}/test" → "Tested a channel" (or its Chinese), the raw action kept in a tooltip.
function auditAction(action) {
  const i = AUDIT_ACTIONS.findIndex(([raw]) => raw === action);
  if (i >= 0) return `<span title="${esc(action)}">${label(`au_${i}`, AUDIT_ACTIONS[i][1])}</span>`;
  return `<code class="small">${esc(action)}</code>`;
}

// Newest first, as the API answers; the user filter is exact, the action one a substring.
async function loadAudit() {
  const form = new FormData($("audit-form"));
  const query = new URLSearchParams({ limit: "50" });
  if (String(form.get("user") || "").trim()) query.set("user", form.get("user").trim());
  if (String(form.get("contains") || "").trim()) query.set("contains", form.get("contains").trim());
  const asked = ++state.auditAsked;
  const audit = await api("GET", `/api/v1/admin/audit?${query}`);
  if (asked !== state.auditAsked) return;  // a later load (another filter, a Refresh) answers instead
  const outcome = (a) => `${statusBadge(a.outcome)}
    ${a.detail && a.detail.status ? `<span class="small">(${esc(a.detail.status)}${a.detail.error ? ` ${esc(a.detail.error)}` : ""})</span>` : ""}`;
  $("admin-audit").innerHTML = rowsOr(audit.items.map((a) => `<tr data-action="${esc(a.action)}"><td>${when(a.at)}</td><td>${esc(a.username)}</td>
    <td>${auditAction(a.action)}</td><td class="text-break">${esc(a.target)}</td><td>${outcome(a)}</td></tr>`), 5);
  labelCells($("admin-view"));
}

// The log API answers oldest first; the panel shows the newest first.
async function loadLogs() {
  const logs = await api("GET", "/api/v1/admin/logs?limit=50");
  $("admin-logs").textContent = logs.items.reverse().map((r) => `${localTime(r.at)} ${r.level} ${r.logger}: ${r.message}`).join("\n");
}

// --- events ------------------------------------------------------------------------------------

async function confirmDelete() {
  return ask("ask_delete", "Delete?", "ask_delete_body", "This cannot be undone.", "delete", "Delete");
}

on(document, "click", async (event) => {
  const el = event.target instanceof Element ? event.target.closest("button") : null;
  if (!el) return;
  const d = el.dataset;
  if (d.show) location.hash = `#/messages/${d.show}`;
  if (d.retry) { await api("POST", `/api/v1/messages/${d.retry}/retry`); toast("success", t("retried", "Re-queued")); await showMessage(Number(d.retry)); }
  if (d.cancel) { await api("POST", `/api/v1/messages/${d.cancel}/cancel`); toast("success", t("cancelled_ok", "Cancelled")); await showMessage(Number(d.cancel)); }
  if (d.recall) await changeMessage(Number(d.recall), "DELETE");
  if (d.test) await busy(el, () => testChannel(d.test, el));
  if (d.editChannel) startChannelEdit(d.editChannel);
  if (d.deleteChannel && await confirmDelete()) { await api("DELETE", `/api/v1/channels/${d.deleteChannel}`); toast("success", t("deleted", "Deleted")); await loadChannels(); }
  if (d.pauseChannel) await taskAction(`/api/v1/channels/${d.pauseChannel}/pause`, "paused", "Paused");
  if (d.resumeChannel) await taskAction(`/api/v1/channels/${d.resumeChannel}/resume`, "resumed", "Resumed");
  if (d.runSchedule) { await api("POST", `/api/v1/schedules/${d.runSchedule}/run`); toast("success", t("run_now", "Run now")); await loadSchedules(); }
  if (d.disableSchedule) { await api("PATCH", `/api/v1/schedules/${d.disableSchedule}`, { enabled: false }); await loadSchedules(); }
  if (d.enableSchedule) { await api("PATCH", `/api/v1/schedules/${d.enableSchedule}`, { enabled: true }); await loadSchedules(); }
  if (d.deleteSchedule && await confirmDelete()) { await api("DELETE", `/api/v1/schedules/${d.deleteSchedule}`); toast("success", t("deleted", "Deleted")); await loadSchedules(); }
  if (d.deleteHook && await confirmDelete()) { await api("DELETE", `/api/v1/hooks/${d.deleteHook}`); toast("success", t("deleted", "Deleted")); await loadHooks(); }
  if (d.deleteKey && await confirmDelete()) { await api("DELETE", `/api/v1/keys/${d.deleteKey}`); toast("success", t("deleted", "Deleted")); await loadKeys(); }
  if (d.reveal) { const input = $(d.reveal); input.type = input.type === "password" ? "text" : "password"; }
  if (d.copy) { await navigator.clipboard.writeText($(d.copy).textContent); toast("success", t("copied", "Copied")); }
  if (d.retryTask) { await taskAction(`/api/v1/tasks/${d.retryTask}/retry`, "retried", "Re-queued"); await loadTasks(true); }
  if (d.cancelTask) { await taskAction(`/api/v1/tasks/${d.cancelTask}/cancel`, "cancelled_ok", "Cancelled"); await loadTasks(true); }
  if (d.pauseMailbox) { await taskAction(`/api/v1/admin/mailboxes/${d.pauseMailbox}/pause`, "paused", "Paused"); await fillTaskFilters(); }
  if (d.resumeMailbox) { await taskAction(`/api/v1/admin/mailboxes/${d.resumeMailbox}/resume`, "resumed", "Resumed"); await fillTaskFilters(); }
  if (d.disable) await patchUser(d.disable, { disabled: true });
  if (d.enable) await patchUser(d.enable, { disabled: false });
  if (d.makeAdmin) await patchUser(d.makeAdmin, { role: "admin" });
  if (d.makeUser) await patchUser(d.makeUser, { role: "user" });
  if (d.ack) { await api("POST", `/api/v1/admin/alerts/${d.ack}/ack`); await loadAlerts(); labelCells($("admin-view")); }
  if (d.runJob) { await api("POST", `/api/v1/admin/jobs/${d.runJob}/run`); await loadJobs(); labelCells($("admin-view")); }
  if (d.restore) await busy(el, () => restoreBackup(d.restore));
  if (d.rollback) await busy(el, () => rollbackConfig(d.rollback));
});

on($("more-messages"), "click", () => loadMessages(false));
on($("refresh-messages"), "click", () => loadMessages(true));
on($("filter-status"), "change", () => loadMessages(true));
on($("filter-channel"), "change", () => loadMessages(true));
on($("filter-text"), "input", async () => drawMessages());
on($("message-filter"), "submit", async (event) => event.preventDefault());
on($("refresh-admin"), "click", loadAdmin);
on($("refresh-dashboard"), "click", loadDashboard);
on($("refresh-tasks"), "click", () => loadTasks(true));
on($("more-tasks"), "click", () => loadTasks(false));
on($("tasks-redrive"), "click", redrive);
on($("task-filter"), "submit", async (event) => { event.preventDefault(); await loadTasks(true); });
on($("backup-now"), "click", (event) => busy(event.currentTarget, backUpNow));
on($("channel-types"), "change", async () => drawChannelFields());
on($("channel-cancel-edit"), "click", async () => endChannelEdit());
on($("send-priority"), "input", async () => { $("priority-value").textContent = $("send-priority").value; });
window.addEventListener("resize", () => { if (dashboardStats && !$("dashboard-view").hidden) drawDashboard(dashboardStats); });

on($("lang"), "click", async () => {
  state.lang = state.lang === "en" ? "zh" : "en";
  localStorage.setItem("mp_lang", state.lang);
  $("lang").blur();
  translate();
  if (state.user && state.openMessage && !$("message-view").hidden) await showMessage(state.openMessage);
  if (state.user && !$("dashboard-view").hidden) await loadDashboard();
});
on($("logout"), "click", async () => { await api("DELETE", "/api/v1/session"); sessionStorage.removeItem("mp_csrf"); state.csrf = ""; showLogin(); });
on(window, "hashchange", route);
// A tap on a link folds the phone menu, also when the link is the page already shown.
on($("nav"), "click", async (event) => {
  const collapse = bootstrap.Collapse.getInstance($("nav-collapse"));
  if (!collapse || !(event.target instanceof Element) || !event.target.closest("a")) return;
  // Bootstrap ignores hide() while the menu is still opening: fold it once it has opened.
  if ($("nav-collapse").classList.contains("collapsing")) $("nav-collapse").addEventListener("shown.bs.collapse", () => collapse.hide(), { once: true });
  else collapse.hide();
});
on($("totp-enrol"), "click", enrolTotp);
on($("totp-remove"), "click", async () => { await api("DELETE", "/api/v1/me/totp"); toast("success", t("totp_removed", "TOTP removed")); await loadAccount(); });

on($("login-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  let session;
  try {
    session = await api("POST", "/api/v1/session", { username: form.get("username"), password: form.get("password") });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      event.target.elements.password.classList.add("is-invalid");
      event.target.querySelector('[data-error-for="password"]').textContent = errorText(err);
    }
    throw err;
  }
  event.target.reset();
  state.csrf = session.csrf_token;
  sessionStorage.setItem("mp_csrf", state.csrf);
  await start();
});

// A successful send clears the form (the defaults ticked again) and opens the message's page.
on($("send-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { title: form.get("title"), body: form.get("body"), format: form.get("format"), priority: Number(form.get("priority")) };
  const channels = form.getAll("channels");
  if (channels.length) body.channels = channels;
  if (form.get("url")) body.url = form.get("url");
  if (form.get("ai")) body.ai = { task: form.get("ai"), ...(form.get("language") ? { language: form.get("language") } : {}) };
  if (form.get("send_at")) body.send_at = new Date(form.get("send_at")).toISOString();
  const accepted = await api("POST", "/api/v1/messages", body);
  event.target.reset();
  $("priority-value").textContent = "3";
  await loadChannelChoices("send-channels");
  toast("success", `${t("message_sent", "Message accepted")}: #${accepted.id}`);
  location.hash = `#/messages/${accepted.id}`;
});

on($("config-form"), "submit", async (event) => { event.preventDefault(); await busy($("config-save"), saveConfig); });
on($("audit-form"), "submit", async (event) => { event.preventDefault(); await loadAudit(); });
on($("user-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  await api("POST", "/api/v1/users", { username: form.get("username"), password: form.get("password"), role: form.get("role") });
  event.target.reset();
  toast("success", t("created_ok", "Created"));
  await loadUsers();
  labelCells($("admin-view"));
});

on($("channel-form"), "submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const config = channelConfig(form);
  const body = { name: form.elements.name.value.trim(), config, default: $("channel-default").checked };
  if (state.editing) await api("PATCH", `/api/v1/channels/${state.editing.id}`, body);
  else await api("POST", "/api/v1/channels", { ...body, type: $("channel-types").value });
  toast("success", t(state.editing ? "saved" : "created_ok", state.editing ? "Saved" : "Created"));
  endChannelEdit();
  await loadChannels();
});

// The edit form is drawn with the message page, so its submit is caught on the document.
on(document, "submit", async (event) => {
  if (event.target.id !== "edit-form") return;
  event.preventDefault();
  const form = new FormData(event.target);
  await changeMessage(Number(event.target.dataset.id), "PATCH", { title: form.get("title"), body: form.get("body") }, event.target);
});

on($("schedule-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { name: form.get("name"), message: { title: form.get("title"), body: form.get("body") } };
  if (form.get("cron")) body.cron = form.get("cron");
  if (form.get("every_seconds")) body.every_seconds = Number(form.get("every_seconds"));
  if (form.get("timezone")) body.timezone = form.get("timezone");
  const channels = form.getAll("channels");
  if (channels.length) body.message.channels = channels;
  await api("POST", "/api/v1/schedules", body);
  event.target.reset();
  toast("success", t("created_ok", "Created"));
  await loadSchedules();
});

// The hook's URL is its secret: shown once here, never again by the API.
on($("hook-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { name: form.get("name") };
  if (form.get("preset")) body.preset = form.get("preset");
  else body.template = { title: form.get("title"), body: form.get("body") };
  const channels = form.getAll("channels");
  if (channels.length) body.channels = channels;
  const made = await api("POST", "/api/v1/hooks", body);
  event.target.reset();
  $("new-hook-url").textContent = made.url;
  $("new-hook").hidden = false;
  toast("success", t("created_ok", "Created"));
  await loadHooks();
});

on($("preview-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  let payload;
  try { payload = JSON.parse(form.get("payload") || "{}"); } catch (err) {
    throw new ApiError(422, "invalid_field", `payload: ${err.message}`, [{ field: "payload", message: err.message }]);
  }
  const shown = await api("POST", `/api/v1/hooks/${form.get("hook")}/preview`, { payload });
  $("preview-result").textContent = (shown.error ? `${shown.error}\n\n` : "") + JSON.stringify(shown.message, null, 2);
});

on($("key-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { name: form.get("name"), scopes: form.getAll("scopes") };
  if (form.get("expires_at")) body.expires_at = new Date(form.get("expires_at")).toISOString();
  const created = await api("POST", "/api/v1/keys", body);
  event.target.reset();
  $("new-key-value").textContent = created.key;
  $("new-key").hidden = false;
  drawExamples(created.key);
  toast("success", t("created_ok", "Created"));
  await loadAccount();
});

on($("password-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  await api("PATCH", "/api/v1/me", { current_password: form.get("current_password"), password: form.get("password") });
  event.target.reset();
  toast("success", t("password_changed", "Password changed"));
});

on($("totp-form"), "submit", async (event) => {
  event.preventDefault();
  await api("POST", "/api/v1/me/totp/confirm", { code: new FormData(event.target).get("code").trim() });
  event.target.reset();
  $("totp-setup").hidden = true;
  toast("success", t("totp_enabled_ok", "TOTP is on"));
  await loadAccount();
});

start().catch(report);
