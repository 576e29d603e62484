// The overview page: platform counters, curves, top rooms, alerts; polled every POLL_MS.
"use strict";

function setRoomLink(id, roomId) {
  const a = document.getElementById(id);
  a.textContent = roomId ?? "–";
  if (roomId !== undefined && roomId !== null) a.href = roomHref(roomId);
}

async function refresh() {
  const d = await getJSON("/api/overview");
  renderHealth(d.health);
  const p = d.platform, now = d.now;
  setText("gmv", fmtYuan(p.gmv_yuan));
  setText("gmv-wan", fmtWan(p.gmv_yuan));
  setText("orders", fmtInt(p.orders));
  setText("rooms", fmtInt(p.rooms) + " rooms this session");
  setText("viewers-now", fmtInt(now.viewers_now));
  setText("active-rooms", fmtInt(now.active_rooms));
  setText("record-peak-value", d.record_peak ? fmtInt(d.record_peak.peak_viewers) : "–");
  setRoomLink("record-peak-room", d.record_peak && d.record_peak.room_id);
  setText("record-gmv-value", d.record_gmv ? fmtYuan(d.record_gmv.gmv_yuan) : "–");
  setRoomLink("record-gmv-room", d.record_gmv && d.record_gmv.room_id);

  const c = d.curve;
  drawChart("chart-viewers", [
    { name: "viewers", data: pairs(c.t, c.viewers), area: true },
    { name: "active rooms", data: pairs(c.t, c.active_rooms), yAxisIndex: 1 },
  ]);
  drawChart("chart-gmv", [
    { name: "GMV ¥", data: pairs(c.t, c.gmv_yuan), type: "bar" },
    { name: "paid orders", data: pairs(c.t, c.orders), yAxisIndex: 1 },
  ]);

  fillTable("top-viewers", d.top_viewers, [
    roomCol, { key: "viewers", fmt: fmtInt }, { key: "peak_viewers", fmt: fmtInt },
    { key: "gmv_yuan", fmt: fmtYuan }, { key: "orders", fmt: fmtInt },
    { key: "avg_watch_s", fmt: (v) => fmtNum(v, 1) }, { key: "uv_value", fmt: (v) => fmtNum(v, 2) },
    { key: "aov", fmt: (v) => fmtNum(v, 2) },
  ]);
  fillTable("top-gmv", d.top_gmv, [
    roomCol, { key: "gmv_yuan", fmt: fmtYuan }, { key: "orders", fmt: fmtInt },
    { key: "peak_viewers", fmt: fmtInt }, { key: "aov", fmt: (v) => fmtNum(v, 2) },
    { key: "uv_value", fmt: (v) => fmtNum(v, 2) }, { key: "refund_rate", fmt: fmtPct },
  ]);
  renderAlerts(d.alerts, "alerts", "alerts-panel");
  markUpdated(d);
}

linkSql();
startPolling(refresh);
