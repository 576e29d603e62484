// The room page: one room's windows, totals, products and alerts; polled every POLL_MS.
"use strict";

const ROOM_ID = new URLSearchParams(location.search).get("room_id") || "";

async function refreshRoom() {
  const d = await getJSON("/api/room?room_id=" + encodeURIComponent(ROOM_ID));
  renderHealth(d.health);
  const t = d.totals || {};
  const w = d.windows;
  const last = w.t.length - 1;
  setText("room-gmv", fmtYuan(t.gmv_yuan));
  setText("room-refunds", t.refunds !== undefined ? fmtInt(t.refunds) + " refunds · " + fmtYuan(t.refund_yuan) : "");
  setText("room-orders", fmtInt(t.orders));
  setText("room-buyers", t.distinct_buyers !== undefined ? fmtInt(t.distinct_buyers) + " buyers" : "");
  setText("room-viewers", last >= 0 ? fmtInt(w.concurrent_viewers[last]) : "–");
  setText("room-peak", t.peak_viewers !== undefined ? "peak " + fmtInt(t.peak_viewers) + " at " + t.peak_at : "");
  setText("room-distinct", fmtInt(t.distinct_viewers));
  setText("room-watch", t.avg_watch_s !== undefined ? "人均观看 " + fmtNum(t.avg_watch_s, 1) + " s" : "");
  setText("room-aov", t.aov !== undefined ? "¥" + fmtNum(t.aov, 2) : "–");
  setText("room-uv", t.uv_value !== undefined ? "UV价值 ¥" + fmtNum(t.uv_value, 2) + " · 退款率 " + fmtPct(t.refund_rate) : "");

  drawChart("chart-room-viewers", [
    { name: "concurrent", data: pairs(w.t, w.concurrent_viewers), area: true },
    { name: "peak", data: pairs(w.t, w.peak_viewers) },
    { name: "unique", data: pairs(w.t, w.unique_viewers) },
  ]);
  drawChart("chart-room-joins", [
    { name: "joins", data: pairs(w.t, w.joins), type: "bar" },
    { name: "leaves", data: pairs(w.t, w.leaves), type: "bar" },
  ]);
  drawChart("chart-room-chats", [
    { name: "chats", data: pairs(w.t, w.chat_messages) },
    { name: "cart adds", data: pairs(w.t, w.cart_adds), yAxisIndex: 1 },
  ]);
  drawChart("chart-room-gmv", [
    { name: "GMV ¥", data: pairs(w.t, w.gmv_yuan), type: "bar" },
    { name: "paid orders", data: pairs(w.t, w.orders), yAxisIndex: 1 },
  ]);
  drawChart("chart-room-derived", [
    { name: "avg viewers", data: pairs(w.t, w.avg_viewers) },
    { name: "cart conversion", data: pairs(w.t, w.cart_conversion), yAxisIndex: 1 },
  ]);

  document.getElementById("sku-panel").hidden = d.products === null;  // no per-SKU metrics yet
  if (d.products !== null) {
    fillTable("products", d.products, [
      { key: "sku_id", cls: "room" }, { key: "units", fmt: fmtInt },
      { key: "paid_orders", fmt: fmtInt }, { key: "gmv_yuan", fmt: fmtYuan },
    ]);
    setText("sell-sku", d.sell_out.sku_id ?? "–");
    drawChart("chart-sell-out", [
      { name: "units sold (cumulative)", data: pairs(d.sell_out.t, d.sell_out.units_cum), step: "end", area: true },
    ]);
  }
  renderAlerts(d.alerts, "room-alerts", "room-alerts-panel");
  markUpdated(d);
}

setText("room-id", ROOM_ID);
document.title = ROOM_ID + " · 直播间 · streamproc";
linkSql(ROOM_ID);
startPolling(refreshRoom);
