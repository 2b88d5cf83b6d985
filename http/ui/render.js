// MessagePusher web UI: pure rendering helpers (no API calls, no page state): escaping, a safe
// markdown subset, an HTML allow-list, local times with their zone, and SVG charts.
"use strict";

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// Only http(s) and mailto links survive; anything else (javascript:, data:) becomes plain text.
function safeHref(url) {
  return /^(https?:\/\/|mailto:)/i.test(String(url || "").trim()) ? String(url).trim() : "";
}

// Markdown, safe by construction: the text is escaped first, then a small subset is turned into
// tags (headings, emphasis, code, links, lists, quotes, paragraphs). No raw HTML gets through.
function inlineMarkdown(text) {
  return esc(text)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (all, label, href) => {
      const url = safeHref(href.replace(/&amp;/g, "&"));
      return url ? `<a href="${esc(url)}" rel="noopener noreferrer" target="_blank">${label}</a>` : label;
    });
}

function markdown(source) {
  const out = [];
  let list = null;
  let para = [];
  let code = null;
  const flush = () => {
    if (para.length) out.push(`<p>${para.map(inlineMarkdown).join("<br>")}</p>`);
    para = [];
    if (list) out.push(`</${list}>`);
    list = null;
  };
  for (const line of String(source || "").split(/\r?\n/)) {
    if (code !== null) {
      if (/^```/.test(line)) { out.push(`<pre><code>${esc(code.join("\n"))}</code></pre>`); code = null; } else code.push(line);
      continue;
    }
    if (/^```/.test(line)) { flush(); code = []; continue; }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const bullet = /^\s*[-*+]\s+(.*)$/.exec(line);
    const numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
    if (heading) { flush(); const n = Math.min(6, heading[1].length + 2); out.push(`<h${n}>${inlineMarkdown(heading[2])}</h${n}>`); }
    else if (bullet || numbered) {
      const kind = bullet ? "ul" : "ol";
      if (para.length) { out.push(`<p>${para.map(inlineMarkdown).join("<br>")}</p>`); para = []; }
      if (list !== kind) { if (list) out.push(`</${list}>`); out.push(`<${kind}>`); list = kind; }
      out.push(`<li>${inlineMarkdown((bullet || numbered)[1])}</li>`);
    } else if (/^>\s?/.test(line)) { flush(); out.push(`<blockquote class="blockquote">${inlineMarkdown(line.replace(/^>\s?/, ""))}</blockquote>`); }
    else if (!line.trim()) flush();
    else { if (list) { out.push(`</${list}>`); list = null; } para.push(line); }
  }
  if (code !== null) out.push(`<pre><code>${esc(code.join("\n"))}</code></pre>`);
  flush();
  return out.join("");
}

// HTML bodies: parsed inertly, then rebuilt from an allow-list of tags and attributes.
const ALLOWED_TAGS = new Set(["P", "BR", "B", "STRONG", "I", "EM", "U", "CODE", "PRE", "UL", "OL", "LI", "BLOCKQUOTE", "H1", "H2", "H3", "H4", "H5", "H6", "A", "SPAN", "DIV", "TABLE", "THEAD", "TBODY", "TR", "TD", "TH", "HR"]);
function sanitizeHtml(html) {
  const doc = new DOMParser().parseFromString(`<body>${html || ""}</body>`, "text/html");
  const walk = (node) => [...node.childNodes].map((child) => {
    if (child.nodeType === Node.TEXT_NODE) return esc(child.textContent);
    if (child.nodeType !== Node.ELEMENT_NODE) return "";
    if (!ALLOWED_TAGS.has(child.tagName)) return ["SCRIPT", "STYLE", "IFRAME", "OBJECT"].includes(child.tagName) ? "" : walk(child);
    const tag = child.tagName.toLowerCase();
    const href = tag === "a" ? safeHref(child.getAttribute("href")) : "";
    const attrs = href ? ` href="${esc(href)}" rel="noopener noreferrer" target="_blank"` : "";
    return tag === "br" || tag === "hr" ? `<${tag}>` : `<${tag}${attrs}>${walk(child)}</${tag}>`;
  }).join("");
  return walk(doc.body);
}

function renderBody(body, format) {
  if (format === "markdown") return markdown(body);
  if (format === "html") return sanitizeHtml(body);
  return `<p class="mp-prewrap">${esc(body)}</p>`;
}

// Times: the browser's own zone, with the zone's name beside every time.
function zoneName(date = new Date(), lang = "en") {
  const part = new Intl.DateTimeFormat(lang === "zh" ? "zh-CN" : "en-GB", { timeZoneName: "short" })
    .formatToParts(date).find((p) => p.type === "timeZoneName");
  return part ? part.value : "";
}
function pad(n) { return String(n).padStart(2, "0"); }
function localTime(iso, lang = "en") {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zoneName(d, lang)}`;
}
function timeTag(iso, lang) { return iso ? `<time datetime="${esc(iso)}" title="${esc(iso)}">${esc(localTime(iso, lang))}</time>` : ""; }

// The page's CSP allows no inline style attributes: sizes and colours travel as data-w and
// data-bg and are set through the DOM once the HTML is in place.
function applyStyles(root) {
  root.querySelectorAll("[data-w]").forEach((el) => { el.style.width = el.dataset.w; });
  root.querySelectorAll("[data-bg]").forEach((el) => { el.style.background = el.dataset.bg; });
}

// Charts: plain SVG strings drawn at their box's width; they may shrink (never grow) to fit.
const STATUS_COLOURS = { delivered: "#198754", partially_failed: "#fd7e14", failed: "#dc3545", cancelled: "#6c757d" };
// `width` is the drawing's own width in px (its box's), so the labels keep their size on a phone.
function stackedBars(labels, series, colours, legend, width = 720) {
  const height = Math.round(Math.min(220, width * 0.5)), left = 28, bottom = 22, top = 8;
  const every = Math.max(1, Math.ceil((labels.length * 44) / width));
  const totals = labels.map((_, i) => Object.values(series).reduce((sum, s) => sum + (s[i] || 0), 0));
  const max = Math.max(1, ...totals);
  const step = (width - left) / labels.length;
  const scale = (height - bottom - top) / max;
  let bars = "";
  labels.forEach((label, i) => {
    let y = height - bottom;
    for (const [name, values] of Object.entries(series)) {
      const h = (values[i] || 0) * scale;
      if (h > 0) { y -= h; bars += `<rect x="${(left + i * step + 1).toFixed(1)}" y="${y.toFixed(1)}" width="${(step - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${colours[name] || "#0d6efd"}"><title>${esc(label)} · ${esc(legend[name] || name)}: ${values[i]}</title></rect>`; }
    }
    if (i % every === 0) bars += `<text x="${(left + i * step).toFixed(1)}" y="${height - 6}" font-size="11" fill="#6c757d">${esc(label)}</text>`;
  });
  const axis = `<text x="0" y="${top + 10}" font-size="11" fill="#6c757d">${max}</text><line x1="${left}" y1="${height - bottom}" x2="${width}" y2="${height - bottom}" stroke="#adb5bd"/>`;
  const key = Object.keys(series).map((name) => `<span class="me-3 text-nowrap"><span class="mp-swatch" data-bg="${colours[name] || "#0d6efd"}"></span>${esc(legend[name] || name)}</span>`).join("");
  return `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" class="mw-100 h-auto" role="img">${axis}${bars}</svg><div class="small mt-1">${key}</div>`;
}

function rateBars(rows, words) {
  if (!rows.length) return `<p class="text-body-secondary mb-0">${esc(words.none)}</p>`;
  return rows.map((r) => {
    const pct = Math.round(r.rate * 100);
    return `<div class="mb-2"><div class="d-flex justify-content-between small"><span>${esc(r.type)}</span>
      <span>${pct}% · ${esc(words.sent)} ${r.sent} · ${esc(words.failed)} ${r.failed}</span></div>
      <div class="progress ${r.failed ? "bg-danger-subtle" : ""}" role="progressbar" aria-valuenow="${pct}" aria-valuemin="0" aria-valuemax="100">
      <div class="progress-bar ${pct >= 95 ? "bg-success" : pct >= 70 ? "bg-warning" : "bg-danger"}" data-w="${pct}%"></div></div></div>`;
  }).join("");
}

function lineChart(labels, values, width = 480) {
  const height = Math.round(Math.min(200, width * 0.45)), left = 28, bottom = 22, top = 8;
  const every = Math.max(1, Math.ceil((labels.length * 48) / width));
  const max = Math.max(1, ...values);
  const x = (i) => left + (i * (width - left - 20)) / Math.max(1, values.length - 1);
  const y = (v) => height - bottom - (v * (height - bottom - top)) / max;
  const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const dots = values.map((v, i) => `<circle cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="#0d6efd"><title>${esc(labels[i])}: ${v}</title></circle>`).join("");
  const ticks = labels.map((l, i) => (i % every === 0 ? `<text x="${x(i).toFixed(1)}" y="${height - 6}" font-size="12" text-anchor="middle" fill="#6c757d">${esc(l)}</text>` : "")).join("");
  return `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" class="mw-100 h-auto" role="img"><text x="0" y="${top + 10}" font-size="11" fill="#6c757d">${max}</text>
    <line x1="${left}" y1="${height - bottom}" x2="${width}" y2="${height - bottom}" stroke="#adb5bd"/>
    <polyline points="${points}" fill="none" stroke="#0d6efd" stroke-width="2"/>${dots}${ticks}</svg>`;
}
