// Shared by both pages: formatting, fetching, the freshness banner, charts, tables.
// Room ids and every other text from the data go through textContent, never innerHTML.
"use strict";

const POLL_MS = 1500;

function fmtInt(v) {
  if (v === null || v === undefined || v === "") return "–";
  return Number(v).toLocaleString("en-US");
}

// Exact ¥ from ClickHouse's decimal string ("1234567.80" -> "¥1,234,567.80"): no float.
function fmtYuan(s) {
  if (s === null || s === undefined) return "–";
  const str = String(s);
  const neg = str.startsWith("-");
  const [whole, frac] = (neg ? str.slice(1) : str).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (neg ? "-¥" : "¥") + grouped + (frac !== undefined ? "." + frac : "");
}

// 万/亿 for the big counters' subtitle (approximate by design; the exact figure is above).
function fmtWan(s) {
  const n = Number(s);
  if (!isFinite(n)) return "";
  if (Math.abs(n) >= 1e8) return (n / 1e8).toFixed(2) + " 亿";
  if (Math.abs(n) >= 1e4) return (n / 1e4).toFixed(2) + " 万";
  return "";
}

function fmtNum(v, digits) {
  if (v === null || v === undefined) return "–";
  return Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function fmtPct(v) {
  if (v === null || v === undefined) return "–";
  return (Number(v) * 100).toFixed(1) + "%";
}

function setText(id, text) {
  const el = document.getElementById(id);
  if (el) el.textContent = text;
}

function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function roomHref(roomId) {
  return "/room?room_id=" + encodeURIComponent(roomId);
}

function sqlHref(name, roomId) {
  return "/sql/" + name + (roomId !== undefined ? "?room_id=" + encodeURIComponent(roomId) : "");
}

// Every element with data-sql="name" becomes a link to the query behind it.
function linkSql(roomId) {
  for (const a of document.querySelectorAll("a[data-sql]")) {
    a.href = sqlHref(a.dataset.sql, roomId);
    a.target = "_blank";
    a.rel = "noopener";
    a.textContent = "SQL";
    a.title = "the query behind this chart (runnable with streamproc sql)";
  }
}

async function getJSON(url) {
  const resp = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  const body = await resp.json().catch(() => ({ error: resp.statusText }));
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

function renderHealth(h) {
  const box = document.getElementById("health");
  box.classList.toggle("stale", h.stale);
  box.dataset.stale = h.stale ? "1" : "0";
  box.replaceChildren();
  if (!h.ok) {
    box.append(el("span", "⚠ 指标不可读 metrics unavailable: " + h.error));
    return;
  }
  const fresh = h.freshness_s === null ? "–" : h.freshness_s.toFixed(1) + " s";
  let lag = h.lag_messages === null ? "–" : fmtInt(h.lag_messages) + " msgs";
  if (h.stalled) lag += " (stalled)";
  else if (h.lag_s !== null) lag += " (" + h.lag_s.toFixed(1) + " s)";
  box.append(
    el("span", (h.stale ? "⚠ " : "● ") + "新鲜度 freshness "),
    el("b", fresh, { id: "freshness" }),
    el("span", " · 积压 lag "),
    el("b", lag, { id: "lag" }),
  );
  if (h.events_per_s !== null) box.append(el("span", " · " + fmtInt(Math.round(h.events_per_s)) + " events/s"));
  // Caught up but nothing arrives: the newest event is old because the input is quiet.
  if (h.lag_messages === 0 && h.events_per_s === 0) box.append(el("span", " · 无新事件 no new events"));
}

function showError(message) {
  const box = document.getElementById("error");
  box.hidden = !message;
  box.textContent = message || "";
}

let updates = 0;
function markUpdated(data) {
  updates += 1;
  document.body.dataset.updates = String(updates);
  const when = new Date(data.as_of * 1000).toLocaleTimeString("zh-CN", { hour12: false });
  setText("updated", "updated " + when + " · data from " + data.via);
}

// A time-series chart: series = [{name, data: [[t, v], ...], type?, yAxisIndex?}].
const charts = {};
function drawChart(id, series, opts) {
  let c = charts[id];
  if (!c) {
    c = charts[id] = echarts.init(document.getElementById(id), "dark", { renderer: "canvas" });
    window.addEventListener("resize", () => c.resize());
  }
  const two = series.some((s) => s.yAxisIndex === 1);
  c.setOption({
    backgroundColor: "transparent",
    animation: false,
    tooltip: { trigger: "axis" },
    legend: { top: 0, textStyle: { color: "#8d97b5" } },
    grid: { left: 60, right: two ? 60 : 20, top: 30, bottom: 30 },
    xAxis: { type: "time", axisLabel: { hideOverlap: true, formatter: "{HH}:{mm}:{ss}" } },
    yAxis: two ? [{ type: "value" }, { type: "value" }] : [{ type: "value" }],
    series: series.map((s) => ({
      type: s.type || "line", showSymbol: false, yAxisIndex: s.yAxisIndex || 0,
      name: s.name, data: s.data, step: s.step, areaStyle: s.area ? {} : undefined,
    })),
    ...(opts || {}),
  }, true);
}

function pairs(ts, vs) {
  return ts.map((t, i) => [t, vs[i] === null ? null : Number(vs[i])]);
}

// Fill <tbody id=...> with rows; cols = [{key, fmt?, cls?, link?}].
function fillTable(id, rows, cols) {
  const body = document.getElementById(id);
  body.replaceChildren();
  for (const r of rows) {
    const tr = el("tr");
    tr.dataset.roomId = r.room_id ?? "";
    for (const c of cols) {
      const text = c.fmt ? c.fmt(r[c.key]) : (r[c.key] ?? "–");
      const td = el("td", c.link ? null : text, { class: c.cls || "", "data-key": c.key });
      if (c.link) {
        const a = el("a", text, { href: c.link(r), title: String(text) });
        td.append(a);
      }
      tr.append(td);
    }
    body.append(tr);
  }
}

function startPolling(fn) {
  const tick = async () => {
    try {
      await fn();
      showError("");
    } catch (e) {
      showError("数据暂不可读 the tables cannot be read: " + e.message);
    }
    setTimeout(tick, POLL_MS);
  };
  tick();
}

function fmtTime(t) {
  return new Date(t).toLocaleTimeString("zh-CN", { hour12: false, timeZone: "UTC" }) + " UTC";
}

const roomCol = { key: "room_id", cls: "room", link: (r) => roomHref(r.room_id) };

function renderAlerts(alerts, tbodyId, panelId) {
  const panel = document.getElementById(panelId);
  panel.hidden = alerts === null;  // no anomaly detection (no room_alerts table) yet
  if (alerts === null) return;
  fillTable(tbodyId, alerts, [
    roomCol, { key: "kind" }, { key: "state" }, { key: "t", fmt: fmtTime },
    { key: "value" }, { key: "baseline" }, { key: "summary", cls: "room" },
  ]);
  const body = document.getElementById(tbodyId);
  alerts.forEach((a, i) => body.children[i].classList.add("alert-" + a.state));
  if (alerts.length === 0) {
    const tr = el("tr");
    tr.append(el("td", "无告警 no alerts so far", { colspan: "7", class: "room" }));
    body.append(tr);
  }
}
