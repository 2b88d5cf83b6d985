// MessagePusher web UI: a thin client of the JSON API, logged in with the session cookie.
// Every call goes through api(); mutations carry the session's CSRF token.
"use strict";

const TEXT = {
  en: {},
  zh: {
    send: "发送", messages: "消息", channels: "渠道", keys: "API 密钥", admin: "管理", logout: "退出",
    login: "登录", username: "用户名", password: "密码", title: "标题", body: "正文", format: "格式",
    link: "要抓取的链接", ai: "AI 处理", none: "无", language: "目标语言", priority: "优先级",
    send_at: "定时发送", status: "状态", created: "创建时间", more: "更多", name: "名称", type: "类型",
    default: "默认", new_channel: "新建渠道", config: "配置 (JSON)", create: "创建", prefix: "前缀",
    scopes: "权限", last_used: "最近使用", test: "测试", delete: "删除", retry: "重试", cancel: "取消",
    details: "详情", sent: "已发送", key_once: "新密钥（只显示这一次）：", refresh: "刷新",
    confirm_password: "你的密码（带 admin 权限的密钥需要）",
    admin_confirm: "你的密码（用于敏感操作）", accepting: "接收新消息", ready: "就绪", scheduler: "调度器",
    node: "节点", uptime: "运行时长 (秒)", config_version: "配置版本", yes: "是", no: "否", component: "组件",
    state: "状态", restarts: "重启次数", pings: "响应心跳", pool: "线程池 (忙/总数)", last_error: "最近错误",
    queue: "队列", count: "数量", oldest: "最久等待 (秒)", raw_json: "原始 JSON", users: "用户", role: "角色",
    role_user: "普通用户", role_admin: "管理员", enabled: "已启用", disabled: "已停用", enable: "启用",
    disable: "停用", make_admin: "设为管理员", make_user: "设为普通用户", create_user: "创建用户", alerts: "告警",
    severity: "级别", rule: "规则", message: "说明", last_seen: "最近出现", acked_by: "确认人", ack: "确认",
    jobs: "定时任务", schedule: "计划", next_run: "下次运行", last_runs: "最近运行", run_now: "立即运行",
    off: "已关闭", events: "监督事件", time: "时间", event: "事件", detail: "详情", logs: "最近日志",
    backups: "备份", backup_now: "立即备份", size: "大小 (字节)", restore: "恢复", backup_taken: "已备份：",
    rotated_out: "轮换删除：", restored: "已从备份恢复：", audit: "审计日志", user: "用户", action: "操作",
    target: "对象", outcome: "结果", filter: "筛选", runtime_config: "运行时配置",
    config_values: "可在运行时修改的键（JSON；只发送你改动的部分）", save_config: "保存为新版本", version: "版本",
    change: "变更", what_changed: "改动内容", rollback: "回滚", overrides: "覆盖项", file_alone: "仅用配置文件",
    config_saved: "已保存为版本", config_unchanged: "没有值被改动，当前版本：",
    schedules: "定时消息", hooks: "Webhook 接入", when: "时间规则", next_runs: "接下来运行", last_fires: "最近触发",
    new_schedule: "新建定时消息", cron: "Cron（分 时 日 月 星期）", every_seconds: "或每 N 秒", timezone: "时区",
    template: "模板", new_hook: "新建 Webhook 接入", preset: "预设", own_template: "自定义模板", title_template: "标题模板",
    body_template: "正文模板", hook_once: "向这个地址 POST（只显示这一次）：", preview: "预览", hook: "接入",
    sample_payload: "示例载荷 (JSON)", recall: "撤回", edit: "编辑", save_edit: "保存修改", every: "每",
    seconds: "秒",
  },
};
const state = { csrf: sessionStorage.getItem("mp_csrf") || "", user: null, lang: localStorage.getItem("mp_lang") || "en", cursor: null, auditAsked: 0, config: null };

function t(key, fallback) { return (TEXT[state.lang] || {})[key] || fallback || key; }
function $(id) { return document.getElementById(id); }
function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
// A rendered button that translate() relabels when the language changes.
function button(action, id, key, en) {
  return `<button type="button" data-${action}="${esc(id)}" data-i18n="${key}" data-en="${en}">${esc(t(key, en))}</button>`;
}

// A rendered piece of text that translate() relabels, like button().
function label(key, en) { return `<span data-i18n="${esc(key)}" data-en="${esc(en)}">${esc(t(key, en))}</span>`; }
function yesNo(value) { return value ? label("yes", "yes") : label("no", "no"); }
function rowsOr(rows, columns) { return rows.join("") || `<tr><td colspan="${columns}">${label("none", "none")}</td></tr>`; }

// An error api() has already put on screen (in #error, or by showing the log-in view).
class ShownError extends Error {}
function report(err) { if (!(err instanceof ShownError)) showError(String(err && err.message || err)); }
// Adds an async listener: the handler starts at once (so preventDefault() still works), and a
// failure is reported on the page instead of escaping to the console as an unhandled rejection.
// A new action (a submit, a button, a view change) clears the last action's error first; a
// click elsewhere, or a load finishing in the background, leaves it on screen.
function on(target, type, handler) {
  target.addEventListener(type, async (event) => {
    if (type !== "click" || (event.target instanceof Element && event.target.closest("button"))) $("error").hidden = true;
    try { await handler(event); } catch (err) { report(err); }
  });
}

function translate() {
  document.querySelectorAll("[data-i18n]").forEach((el) => {
    if (!el.dataset.en) el.dataset.en = el.textContent;
    el.textContent = state.lang === "en" ? el.dataset.en : t(el.dataset.i18n, el.dataset.en);
  });
  $("lang").textContent = state.lang === "en" ? "中文" : "English";
  document.documentElement.lang = state.lang === "en" ? "en" : "zh-CN";
}

async function api(method, path, body, extraHeaders) {
  const headers = { Accept: "application/json", ...extraHeaders };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401 && path !== "/api/v1/session") { showLogin(); throw new ShownError("login needed"); }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `HTTP ${response.status}`;
    showError(message);
    throw new ShownError(message);
  }
  return data;
}

function showError(message) { $("error").textContent = message; $("error").hidden = false; }

function show(view) {
  document.querySelectorAll("main > section").forEach((s) => { s.hidden = s.id !== `${view}-view`; });
}

// Also forgets what the last user saw, so the next one at this browser finds none of it.
function showLogin() {
  state.user = null; state.cursor = null;
  $("nav").hidden = true; $("logout").hidden = true; $("who").textContent = "";
  $("new-key").hidden = true; $("new-key-value").textContent = "";
  ["messages-body", "channels-body", "keys-body", "send-channels", "message-detail", "admin-summary", "admin-components",
    "admin-queues", "admin-users", "admin-alerts", "admin-jobs", "admin-backups", "admin-events", "admin-audit", "audit-actions",
    "backup-result", "config-summary", "admin-config-versions", "config-result", "schedules-body", "schedule-channels",
    "hooks-body", "hook-channels", "preview-hooks", "preview-result", "new-hook-url"].forEach((id) => { $(id).innerHTML = ""; });
  $("new-hook").hidden = true;
  delete $("message-detail").dataset.id;
  $("admin-status").textContent = ""; $("admin-logs").textContent = "";
  $("backup-result").hidden = true; $("config-result").hidden = true; state.config = null;
  $("admin-confirm-form").reset(); $("config-form").reset(); $("user-form").reset(); $("audit-form").reset();
  show("login");
}

async function route() {
  if (!state.user) return;
  let view = (location.hash || "#send").slice(1);
  if (view === "admin" && state.user.role !== "admin") view = "send";  // left there by an admin who logged out
  show(view);
  if (view === "send") await loadChannelChoices();
  if (view === "messages") await loadMessages(true);
  if (view === "schedules") await loadSchedules();
  if (view === "hooks") await loadHooks();
  if (view === "channels") await loadChannels();
  if (view === "keys") await loadKeys();
  if (view === "admin") await loadAdmin();
}

async function start() {
  translate();
  try {
    state.user = await api("GET", "/api/v1/me");
  } catch (_) {
    return showLogin();
  }
  $("nav").hidden = false; $("logout").hidden = false;
  $("who").textContent = state.user.username;
  $("admin-link").hidden = state.user.role !== "admin";
  $("key-confirm").hidden = state.user.role !== "admin";
  await route();
}

async function loadChannelChoices(selectId = "send-channels") {
  const channels = await api("GET", "/api/v1/channels?limit=200");
  $(selectId).innerHTML = channels.items.map((c) => `<option value="${esc(c.name)}" ${c.default ? "selected" : ""}>${esc(c.name)} (${esc(c.type)})</option>`).join("");
}

async function loadSchedules() {
  const page = await api("GET", "/api/v1/schedules?limit=200");
  const when = (s) => (s.cron ? `<code>${esc(s.cron)}</code> ${esc(s.timezone)}` : `${label("every", "every")} ${s.every_seconds} ${label("seconds", "s")}`);
  const fires = (s) => s.recent_fires.slice(0, 3).map((f) => `<span class="status-${esc(f.outcome)}">${esc(f.fire_at)} ${esc(f.outcome)}</span>`).join("<br>");
  $("schedules-body").innerHTML = rowsOr(page.items.map((s) => `<tr data-schedule="${s.id}"><td>${s.id}</td><td>${esc(s.name)}</td><td>${when(s)}</td>
    <td class="next-runs">${s.next_runs.slice(0, 3).map(esc).join("<br>") || label("off", "off")}</td><td>${fires(s)}</td>
    <td>${button("run-schedule", s.id, "run_now", "Run now")}
    ${s.enabled ? button("disable-schedule", s.id, "disable", "Disable") : button("enable-schedule", s.id, "enable", "Enable")}
    ${button("delete-schedule", s.id, "delete", "Delete")}</td></tr>`), 6);
  await loadChannelChoices("schedule-channels");
}

async function loadHooks() {
  const page = await api("GET", "/api/v1/hooks?limit=200");
  $("hooks-body").innerHTML = rowsOr(page.items.map((h) => `<tr><td>${h.id}</td><td>${esc(h.name)}</td>
    <td>${esc(h.preset || (h.template && h.template.title) || "")}</td><td>${esc(h.last_used_at || "")}</td>
    <td>${esc(h.last_error || "")}</td><td>${button("delete-hook", h.id, "delete", "Delete")}</td></tr>`), 6);
  $("preview-hooks").innerHTML = page.items.map((h) => `<option value="${h.id}">${esc(h.name)}</option>`).join("");
  await loadChannelChoices("hook-channels");
}

// A recall or edit answers each delivery's change: shown beside the delivery until the next load.
async function changeMessage(id, method, body) {
  const m = await api(method, `/api/v1/messages/${id}`, body);
  await showMessage(id, m);
}

// The first page replaces the rows (so overlapping reloads cannot duplicate them); "More" appends.
async function loadMessages(fromStart) {
  const cursor = fromStart ? null : state.cursor;
  const query = cursor ? `?limit=50&cursor=${encodeURIComponent(cursor)}` : "?limit=50";
  const page = await api("GET", `/api/v1/messages${query}`);
  const rows = page.items.map((m) => `<tr><td>${m.id}</td><td>${esc(m.title)}</td>
    <td class="status-${esc(m.status)}">${esc(m.status)}</td><td>${esc(m.created_at)}</td>
    <td>${button("show", m.id, "details", "Details")}</td></tr>`).join("");
  if (cursor) $("messages-body").insertAdjacentHTML("beforeend", rows);
  else $("messages-body").innerHTML = rows;
  state.cursor = page.next_cursor;
  $("more-messages").hidden = !page.next_cursor;
}

async function showMessage(id, changed) {
  const m = changed || await api("GET", `/api/v1/messages/${id}`);
  const change = (c) => (c ? ` · <b class="change status-${esc(c.status)}">${esc(c.action)}: ${esc(c.status)}</b> ${esc(c.detail)}` : "");
  const deliveries = m.deliveries.map((d) => `<li>${esc(d.channel.name)} (${esc(d.channel.type)}): <span class="status-${esc(d.status)}">${esc(d.status)}</span>
    · ${d.attempts} · ${esc(d.last_error || "")}${change(d.change)}</li>`).join("");
  const events = m.events.map((e) => `<li>${esc(e.at)} — ${esc(e.type)} ${e.detail ? esc(JSON.stringify(e.detail)) : ""}</li>`).join("");
  const row = document.querySelector(`[data-show="${m.id}"]`);
  if (row) {
    const cell = row.closest("tr").children[2];
    cell.textContent = m.status;
    cell.className = `status-${m.status}`;
  }
  $("message-detail").dataset.id = m.id;
  $("message-detail").innerHTML = `<h3>#${m.id} ${esc(m.title)}</h3><p>${esc(m.status)}</p>
    <p>${button("retry", m.id, "retry", "Retry")} ${button("cancel", m.id, "cancel", "Cancel")} ${button("recall", m.id, "recall", "Recall")}</p>
    <form id="edit-form" data-id="${m.id}" class="inline"><input name="title" value="${esc(m.title)}" maxlength="256">
      <textarea name="body" rows="2">${esc(m.body)}</textarea>
      <button type="submit" data-i18n="save_edit" data-en="Edit">${esc(t("save_edit", "Edit"))}</button></form>
    ${m.ai ? `<pre>${esc(m.ai.task)}: ${esc(m.ai.result || m.ai.error)}</pre>` : ""}
    <ul>${deliveries}</ul><ol>${events}</ol>`;
}

// The channel types come from the API's own schema, read once per page load.
async function loadChannelTypes() {
  if ($("channel-types").options.length) return;
  const schema = await api("GET", "/openapi.json");
  const types = Object.keys(schema.components.schemas).filter((n) => n.startsWith("ChannelConfig_")).map((n) => n.slice(14));
  $("channel-types").innerHTML = [...types, "group"].map((n) => `<option>${esc(n)}</option>`).join("");
}

async function loadChannels() {
  const channels = await api("GET", "/api/v1/channels?limit=200");
  $("channels-body").innerHTML = channels.items.map((c) => `<tr><td>${c.id}</td><td>${esc(c.name)}</td><td>${esc(c.type)}</td>
    <td>${c.default ? "✓" : ""}</td><td>${button("test", c.id, "test", "Test")}
    ${button("delete-channel", c.id, "delete", "Delete")}</td></tr>`).join("");
  await loadChannelTypes();
}

async function loadKeys() {
  const keys = await api("GET", "/api/v1/keys");
  $("keys-body").innerHTML = keys.items.map((k) => `<tr><td>${k.id}</td><td>${esc(k.name)}</td><td>${esc(k.prefix)}</td>
    <td>${esc(k.scopes.join(", "))}</td><td>${esc(k.last_used_at || "")}</td>
    <td>${button("delete-key", k.id, "delete", "Delete")}</td></tr>`).join("");
}

// Top to bottom, one after another: the first section that fails stops the rest, its error shown.
async function loadAdmin() {
  for (const load of [loadStatus, loadConfig, loadUsers, loadAlerts, loadJobs, loadBackups, loadEvents, loadAudit, loadLogs]) {
    if (!state.user) return;  // logged out meanwhile: fill nothing more into the hidden panel
    await load();
  }
}

// The Admin view's one password field: sent as X-Confirm only by the calls that need it, then cleared.
function confirmation() {
  const secret = $("admin-confirm").value;
  $("admin-confirm").value = "";
  return secret ? { "X-Confirm": secret } : {};
}

async function loadStatus() {
  const s = await api("GET", "/api/v1/admin/status");
  const fact = (key, en, value) => `<span>${label(key, en)}: <b>${value}</b></span>`;
  $("admin-summary").innerHTML = [fact("accepting", "Accepting", yesNo(s.accepting)), fact("ready", "Ready", yesNo(s.ready)),
    fact("scheduler", "Scheduler", yesNo(s.scheduler_running)), fact("node", "Node", esc(s.node)),
    fact("uptime", "Uptime (s)", esc(s.uptime_seconds)), fact("config_version", "Config version", esc(s.config_version)),
  ].join(" · ") + Object.entries(s.failing).map(([part, why]) => `<br><span class="status-failed">${esc(part)}: ${esc(why)}</span>`).join("");
  $("admin-components").innerHTML = rowsOr(Object.entries(s.components).map(([name, c]) => `<tr><td>${esc(name)}</td>
    <td class="status-${esc(c.state)}">${esc(c.state)}</td><td>${c.restarts}</td><td>${yesNo(c.answering_pings)}</td>
    <td>${c.pool ? `${c.pool.in_flight}/${c.pool.workers}` : ""}</td><td>${esc(c.last_error || "")}</td></tr>`), 6);
  $("admin-queues").innerHTML = rowsOr(s.mailbox.map((q) => `<tr><td>${esc(q.recipient)}</td><td>${esc(q.state)}</td>
    <td>${q.count}</td><td>${q.oldest_ready_age_seconds}</td></tr>`), 4);
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
  $("admin-config-versions").innerHTML = versions.items.map((v) => `<tr><td>${v.version}</td><td>${esc(v.at)}</td>
    <td>${esc(v.username)}</td><td>${esc(v.comment)}</td><td>${changed(v.diff)}</td><td>${rollback(v.version)}</td></tr>`).join("")
    + `<tr><td>0</td><td></td><td></td><td>${label("file_alone", "the configuration file alone")}</td><td></td><td>${rollback(0)}</td></tr>`;
}

function isObject(value) { return value !== null && typeof value === "object" && !Array.isArray(value); }

// The PATCH body: the leaves of `edited` that differ from `loaded`, nested as the API wants them
// (sending every value would pin them all as overrides); a leaf deleted becomes null (no override).
function configChanges(loaded, edited) {
  if (!isObject(loaded) || !isObject(edited)) return edited;
  const out = {};
  for (const key of new Set([...Object.keys(loaded), ...Object.keys(edited)])) {
    if (!(key in edited)) out[key] = null;
    else if (isObject(loaded[key]) && isObject(edited[key])) {
      const inner = configChanges(loaded[key], edited[key]);
      if (Object.keys(inner).length) out[key] = inner;
    } else if (JSON.stringify(loaded[key]) !== JSON.stringify(edited[key])) out[key] = edited[key];
  }
  return out;
}

// Sensitive (X-Confirm), a patch and a rollback alike; a refused value changes nothing, the text
// typed stays for correcting. The status is reloaded too: its pool sizes and config version moved.
function showConfigResult(done) {
  $("config-result").innerHTML = done.changed
    ? `${label("config_saved", "Saved as version")} <b>${esc(done.version)}</b> (${esc(done.comment)})`
    : `${label("config_unchanged", "No value changed; the current version is")} <b>${esc(done.version)}</b>`;
  $("config-result").hidden = false;
}

async function saveConfig() {
  let edited;
  try { edited = JSON.parse($("config-values").value); } catch (err) { return showError(`config: ${err.message}`); }
  const done = await api("PATCH", "/api/v1/admin/config", configChanges(state.config, edited), confirmation());
  showConfigResult(done);
  await loadStatus();
  await loadConfig();
}

async function rollbackConfig(version) {
  const done = await api("POST", `/api/v1/admin/config/versions/${version}/rollback`, undefined, confirmation());
  showConfigResult(done);
  await loadStatus();
  await loadConfig();
}

async function loadUsers() {
  const users = await api("GET", "/api/v1/users?limit=200");
  $("admin-users").innerHTML = users.items.map((u) => `<tr><td>${u.id}</td><td>${esc(u.username)}</td>
    <td>${label(`role_${u.role}`, u.role)}</td><td>${u.disabled ? label("disabled", "disabled") : label("enabled", "enabled")}</td>
    <td>${esc(u.created_at)}</td><td>${u.id === state.user.id ? "" : userActions(u)}</td></tr>`).join("");
}

// No buttons on one's own row: an admin who disabled or demoted themselves would be locked out.
function userActions(u) {
  return `${u.disabled ? button("enable", u.id, "enable", "Enable") : button("disable", u.id, "disable", "Disable")}
    ${u.role === "admin" ? button("make-user", u.id, "make_user", "Make user") : button("make-admin", u.id, "make_admin", "Make admin")}`;
}

async function patchUser(id, change, headers) {
  await api("PATCH", `/api/v1/users/${id}`, change, headers);
  await loadUsers();
}

async function loadAlerts() {
  const alerts = await api("GET", "/api/v1/admin/alerts?limit=50");
  $("admin-alerts").innerHTML = rowsOr(alerts.items.map((a) => `<tr><td>${a.id}</td><td>${esc(a.severity)}</td>
    <td class="status-${esc(a.state)}">${esc(a.state)}</td><td>${esc(a.rule)} (${esc(a.key)})</td><td>${esc(a.message)}</td>
    <td>${a.count}</td><td>${esc(a.last_at)}</td><td>${a.acknowledged_by ? esc(a.acknowledged_by) : button("ack", a.id, "ack", "Ack")}</td></tr>`), 8);
}

async function loadJobs() {
  const jobs = await api("GET", "/api/v1/admin/jobs");
  const run = (r) => `<li>#${r.id} <span class="status-${esc(r.outcome)}">${esc(r.outcome)}</span> ${esc(r.started_at)}
    ${r.duration_seconds === null ? "" : `(${r.duration_seconds} s)`} ${esc(r.error || "")}</li>`;
  $("admin-jobs").innerHTML = jobs.items.map((j) => `<tr><td>${esc(j.name)}</td>
    <td>${esc(j.schedule ? j.schedule.cron || j.schedule.every : "")} ${j.schedule && j.schedule.enabled ? "" : label("off", "off")}</td>
    <td>${esc(j.next_run_at || "")}</td><td><ul>${j.last_runs.slice(0, 3).map(run).join("")}</ul></td>
    <td>${button("run-job", j.name, "run_now", "Run now")}</td></tr>`).join("");
}

async function loadEvents() {
  const events = await api("GET", "/api/v1/admin/supervisor/events?limit=50");
  $("admin-events").innerHTML = rowsOr(events.items.map((e) => `<tr><td>${esc(e.at)}</td><td>${esc(e.actor)}</td>
    <td>${esc(e.event)}</td><td>${esc(e.detail)}</td></tr>`), 4);
}

// The backups API answers newest first, synchronously (201 once the copy is checked).
async function loadBackups() {
  const backups = await api("GET", "/api/v1/admin/backups");
  $("admin-backups").innerHTML = rowsOr(backups.items.map((b) => `<tr><td>${esc(b.name)}</td><td>${b.bytes}</td>
    <td>${esc(b.created_at)}</td><td>${button("restore", b.name, "restore", "Restore")}</td></tr>`), 4);
}

function showBackupResult(html) { $("backup-result").innerHTML = html; $("backup-result").hidden = false; }

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
}

// Sensitive (X-Confirm). The service refuses new work meanwhile and restarts its actors; the
// whole panel is reloaded after, since everything in it came from the database just replaced.
async function restoreBackup(name) {
  const done = await api("POST", `/api/v1/admin/backups/${encodeURIComponent(name)}/restore`, undefined, confirmation());
  showBackupResult(`${label("restored", "Restored from backup:")} <code>${esc(done.restored)}</code> (${done.duration_seconds} s)`);
  await loadAdmin();
}

// Newest first, as the API answers; the filters are the API's exact-match user and action.
async function loadAudit() {
  const form = new FormData($("audit-form"));
  const query = new URLSearchParams({ limit: "50" });
  for (const name of ["user", "action"]) if (form.get(name).trim()) query.set(name, form.get(name).trim());
  const asked = ++state.auditAsked;
  const audit = await api("GET", `/api/v1/admin/audit?${query}`);
  if (asked !== state.auditAsked) return;  // a later load (another filter, a Refresh) answers instead
  const outcome = (a) => `<span class="status-${esc(a.outcome)}">${esc(a.outcome)}</span>
    ${a.detail && a.detail.status ? `(${esc(a.detail.status)}${a.detail.error ? ` ${esc(a.detail.error)}` : ""})` : ""}`;
  $("admin-audit").innerHTML = rowsOr(audit.items.map((a) => `<tr><td>${esc(a.at)}</td><td>${esc(a.username)}</td>
    <td>${esc(a.action)}</td><td>${esc(a.target)}</td><td>${outcome(a)}</td></tr>`), 5);
  const known = new Set([...$("audit-actions").options].map((o) => o.value));
  audit.items.forEach((a) => known.add(a.action));  // suggestions for the action filter
  $("audit-actions").innerHTML = [...known].sort().map((action) => `<option value="${esc(action)}">`).join("");
}

// The log API answers oldest first; the panel shows the newest first.
async function loadLogs() {
  const logs = await api("GET", "/api/v1/admin/logs?limit=50");
  $("admin-logs").textContent = logs.items.reverse().map((r) => `${r.at} ${r.level} ${r.logger}: ${r.message}`).join("\n");
}

on(document, "click", async (event) => {
  const el = event.target;
  if (!(el instanceof HTMLElement)) return;
  if (el.dataset.show) await showMessage(el.dataset.show);
  if (el.dataset.retry) { await api("POST", `/api/v1/messages/${el.dataset.retry}/retry`); await showMessage(el.dataset.retry); }
  if (el.dataset.cancel) { await api("POST", `/api/v1/messages/${el.dataset.cancel}/cancel`); await showMessage(el.dataset.cancel); }
  if (el.dataset.test) { const r = await api("POST", `/api/v1/channels/${el.dataset.test}/test`); alert(`${r.status} ${r.detail || ""}`); }
  if (el.dataset.deleteChannel) { await api("DELETE", `/api/v1/channels/${el.dataset.deleteChannel}`); await loadChannels(); }
  if (el.dataset.recall) await changeMessage(el.dataset.recall, "DELETE");
  if (el.dataset.runSchedule) { await api("POST", `/api/v1/schedules/${el.dataset.runSchedule}/run`); await loadSchedules(); }
  if (el.dataset.disableSchedule) { await api("PATCH", `/api/v1/schedules/${el.dataset.disableSchedule}`, { enabled: false }); await loadSchedules(); }
  if (el.dataset.enableSchedule) { await api("PATCH", `/api/v1/schedules/${el.dataset.enableSchedule}`, { enabled: true }); await loadSchedules(); }
  if (el.dataset.deleteSchedule) { await api("DELETE", `/api/v1/schedules/${el.dataset.deleteSchedule}`); await loadSchedules(); }
  if (el.dataset.deleteHook) { await api("DELETE", `/api/v1/hooks/${el.dataset.deleteHook}`); await loadHooks(); }
  if (el.dataset.deleteKey) { await api("DELETE", `/api/v1/keys/${el.dataset.deleteKey}`); await loadKeys(); }
  if (el.dataset.disable) await patchUser(el.dataset.disable, { disabled: true });
  if (el.dataset.enable) await patchUser(el.dataset.enable, { disabled: false });
  if (el.dataset.makeAdmin) await patchUser(el.dataset.makeAdmin, { role: "admin" }, confirmation());
  if (el.dataset.makeUser) await patchUser(el.dataset.makeUser, { role: "user" }, confirmation());
  if (el.dataset.ack) { await api("POST", `/api/v1/admin/alerts/${el.dataset.ack}/ack`); await loadAlerts(); }
  if (el.dataset.runJob) { await api("POST", `/api/v1/admin/jobs/${el.dataset.runJob}/run`); await loadJobs(); }
  if (el.dataset.restore) await busy(el, () => restoreBackup(el.dataset.restore));
  if (el.dataset.rollback) await busy(el, () => rollbackConfig(el.dataset.rollback));
});

on($("more-messages"), "click", () => loadMessages(false));
on($("refresh-messages"), "click", async () => {
  await loadMessages(true);
  if ($("message-detail").dataset.id) await showMessage($("message-detail").dataset.id);
});
on($("refresh-admin"), "click", loadAdmin);
on($("backup-now"), "click", (event) => busy(event.currentTarget, backUpNow));
on($("lang"), "click", () => { state.lang = state.lang === "en" ? "zh" : "en"; localStorage.setItem("mp_lang", state.lang); translate(); });
on($("logout"), "click", async () => { await api("DELETE", "/api/v1/session"); sessionStorage.removeItem("mp_csrf"); state.csrf = ""; showLogin(); });
on(window, "hashchange", route);

on($("login-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const session = await api("POST", "/api/v1/session", { username: form.get("username"), password: form.get("password") });
  event.target.reset();
  state.csrf = session.csrf_token;
  sessionStorage.setItem("mp_csrf", state.csrf);
  await start();
});

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
  location.hash = "#messages";
  await showMessage(accepted.id);
});

on($("admin-confirm-form"), "submit", (event) => event.preventDefault());
on($("config-form"), "submit", async (event) => { event.preventDefault(); await busy($("config-save"), saveConfig); });
on($("audit-form"), "submit", async (event) => { event.preventDefault(); await loadAudit(); });
on($("user-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { username: form.get("username"), password: form.get("password"), role: form.get("role") };
  await api("POST", "/api/v1/users", body, body.role === "admin" ? confirmation() : {});  // an admin account is sensitive
  event.target.reset();
  await loadUsers();
});

on($("channel-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  let config;
  try { config = JSON.parse(form.get("config") || "{}"); } catch (err) { return showError(`config: ${err.message}`); }
  await api("POST", "/api/v1/channels", { name: form.get("name"), type: form.get("type"), config, default: form.get("default") === "on" });
  const type = form.get("type");
  event.target.reset();
  $("channel-types").value = type;  // the next channel is often of the same type
  await loadChannels();
});

// The edit form is drawn with the message detail, so its submit is caught on the document.
on(document, "submit", async (event) => {
  if (event.target.id !== "edit-form") return;
  event.preventDefault();
  const form = new FormData(event.target);
  await changeMessage(event.target.dataset.id, "PATCH", { title: form.get("title"), body: form.get("body") });
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
  await loadHooks();
});

on($("preview-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  let payload;
  try { payload = JSON.parse(form.get("payload") || "{}"); } catch (err) { return showError(`payload: ${err.message}`); }
  const shown = await api("POST", `/api/v1/hooks/${form.get("hook")}/preview`, { payload });
  $("preview-result").textContent = (shown.error ? `${shown.error}\n\n` : "") + JSON.stringify(shown.message, null, 2);
});

on($("key-form"), "submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const confirm = form.get("confirm");
  const created = await api("POST", "/api/v1/keys", { name: form.get("name") }, confirm ? { "X-Confirm": confirm } : {});
  event.target.reset();
  $("new-key-value").textContent = created.key;
  $("new-key").hidden = false;
  await loadKeys();
});

start().catch(report);
