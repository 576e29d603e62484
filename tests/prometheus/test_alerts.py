"""``AlertsCollector``: fired counts as deltas, firing alerts bounded like the top K."""

from __future__ import annotations

from streamproc.prometheus.alerts import AlertsCollector

from .support import NOW, T0, scrape, stats, value


def test_fired_deltas_and_firing_by_kind() -> None:
    c = AlertsCollector("w", 10, NOW)
    c.reset(0, stats(alerts_fired={"sales_stall": 2}))
    firing = (("r1", "sales_stall", T0), ("r2", "chat_flood", T0))
    c.update(0, stats(alerts_fired={"sales_stall": 3, "chat_flood": 1}, alerts_firing=firing),
             new_engine=False)  # fmt: skip
    assert value(c, "streamproc_anomaly_alerts_total", kind="sales_stall") == 1
    assert value(c, "streamproc_anomaly_alerts_total", kind="chat_flood") == 1
    assert value(c, "streamproc_anomaly_alerts_firing", kind="sales_stall") == 1
    rooms = scrape(c)["streamproc_room_anomaly_firing"]
    assert ({"room_id": "r1", "kind": "sales_stall", "severity": "page"}, 1) in rooms
    c.drop(0)
    assert "streamproc_room_anomaly_firing" not in scrape(c)
    assert value(c, "streamproc_anomaly_alerts_total", kind="sales_stall") == 1  # kept


def test_room_series_paging_first_newest_first_at_most_k() -> None:
    c = AlertsCollector("w", 2, NOW)
    firing = (
        ("old", "sales_stall", T0),
        ("new", "sales_stall", T0 + 60_000),
        ("info", "broadcast_end", T0 + 120_000),
    )
    c.update(0, stats(alerts_firing=firing), new_engine=False)
    rooms = [lab["room_id"] for lab, _ in scrape(c)["streamproc_room_anomaly_firing"]]
    assert rooms == ["new", "old"]
