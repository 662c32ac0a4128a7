"""`zonewatch watch`: the latency sampler over Prometheus buckets, and the table rendered from zone docs.

No Kafka, no Redis: the renderer is pure; the sampler gets a fake fetch. The quantile itself is
gateway.promtext's (tests/unit/gateway/test_promtext.py).
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from zonewatch.demo import simulator_cmd
from zonewatch.watch import (
    Latency,
    LatencySampler,
    Snapshot,
    level_cell,
    parse_docs,
    render,
    zone_sort_key,
)

METRICS = """\
# HELP zonewatch_e2e_latency_seconds Kafka message timestamp ...
# TYPE zonewatch_e2e_latency_seconds histogram
zonewatch_e2e_latency_seconds_bucket{le="0.1",source="calls"} 10.0
zonewatch_e2e_latency_seconds_bucket{le="0.2",source="calls"} 20.0
zonewatch_e2e_latency_seconds_bucket{le="+Inf",source="calls"} 20.0
zonewatch_e2e_latency_seconds_count{source="calls"} 20.0
zonewatch_e2e_latency_seconds_sum{source="calls"} 2.5
zonewatch_e2e_latency_seconds_bucket{le="0.1",source="gps"} 40.0
zonewatch_e2e_latency_seconds_bucket{le="0.2",source="gps"} 70.0
zonewatch_e2e_latency_seconds_bucket{le="+Inf",source="gps"} 80.0
zonewatch_event_age_seconds_bucket{le="0.1",source="gps"} 999.0
"""


def _scaled(text: str, factor: float) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith("zonewatch_e2e_latency_seconds_bucket"):
            head, value = line.rsplit(" ", 1)
            line = f"{head} {float(value) * factor}"
        out.append(line)
    return "\n".join(out)


def test_latency_sampler_uses_deltas_and_survives_missing_workers():
    pages = {"http://a/metrics": [METRICS, _scaled(METRICS, 3)]}   # second scrape: +2x the first

    def fetch(url, timeout):
        if url not in pages or not pages[url]:
            raise OSError("connection refused")
        return pages[url].pop(0)

    s = LatencySampler(["http://a/metrics", "http://b/metrics"], fetch=fetch)
    first = s.sample()
    assert (first.asked, first.answered, first.warming, first.p50) == (2, 1, True, None)
    second = s.sample()
    assert second.answered == 1 and not second.warming
    assert second.count == pytest.approx(200)        # the window's delta, not the cumulative 300
    assert second.p50 == pytest.approx(0.1)
    assert second.p99 == pytest.approx(0.2)          # rank 198 lies in +Inf: the largest finite bound
    pages["http://a/metrics"].append(_scaled(METRICS, 3))           # nothing new in this window
    quiet = s.sample()
    assert quiet.count == 0 and quiet.idle_s is not None     # the last window's figures, marked idle
    assert (quiet.p50, quiet.p99) == (second.p50, second.p99)
    gone = s.sample()                                  # worker a vanished too
    assert (gone.answered, gone.p50) == (0, None)
    s.close()


def doc(zid, *, ring=None, level="green", name=None, version=3, clock=1_700_000_000_000, calls=0, alerts=0,
        c5=0, a5=0, c15=0, p1=0, present=0, available=0, open_incidents=0):
    w = {"calls": c5, "calls_p1": 0, "alerts": a5, "alerts_by_type": {}}
    return {
        "zone_id": zid, "name": name or zid.upper(), "kind": "venue" if ring else "grid", "ring": ring,
        "version": version, "clock": clock, "level": level,
        "today": {"date": "2023-11-15", "calls": calls, "calls_by_category": {}, "calls_by_priority": {},
                  "alerts": alerts, "alerts_by_type": {}},
        "windows": {"5m": w, "15m": {"calls": c15, "calls_p1": p1, "alerts": 0, "alerts_by_type": {}}, "60m": w},
        "units": {"present": present, "available": available},
        "response": {}, "open_incidents": open_incidents,
    }


def _screen(snap: Snapshot) -> str:
    console = Console(file=io.StringIO(), width=220, record=True, color_system="truecolor")
    console.print(render(snap, "Asia/Shanghai"))
    return console.export_text()


def test_render_table_from_zone_docs():
    import orjson

    ids = ["grid-r2c10", "grid-r2c2", "venue-core", "venue-outer", "ghost"]
    docs = {
        "venue-core": doc("venue-core", ring="core", level="red", name="Venue core", version=17,
                          calls=12, alerts=40, c5=1, a5=3, c15=4, p1=2, present=14, available=9, open_incidents=2),
        "venue-outer": doc("venue-outer", ring="outer", level="yellow"),
        "grid-r2c2": doc("grid-r2c2", level="orange", clock=1_700_000_000_000 - 60_000),
        "grid-r2c10": doc("grid-r2c10", level="green"),
    }
    raw = [orjson.dumps(docs[i]) if i in docs else None for i in ids]
    zones = parse_docs(ids, raw)
    # venue rings first (core, inner, outer), then by id with numbers compared as numbers
    assert [z["zone_id"] for z in zones] == ["venue-core", "venue-outer", "ghost", "grid-r2c2", "grid-r2c10"]

    snap = Snapshot(taken_ms=1_700_000_002_000, zones=zones, updates_per_s=12.5,
                    latency=Latency(asked=1, answered=1, count=10, p50=0.042, p99=0.18))
    text = _screen(snap)
    for zid in ids:
        assert zid in text
    for level in ("red", "orange", "yellow", "green"):
        assert f" {level} " in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.split() and line.split()[0] in ids}
    core = lines["venue-core"]
    for cell in ("Venue core", "core", "red", "12", "40", "1 / 3", "4 (2)", "14 / 9", "17", "2.0s"):
        assert cell in core, (cell, core)
    assert "62s" in lines["grid-r2c2"]                 # its clock is a minute older
    assert "not written yet" in lines["ghost"]
    # header: stream clock in local time (2023-11-15 06:13:20 +08:00), zones, rate, latency
    assert "2023-11-15 06:13:20 CST" in text
    assert "5 zones" in text and "12.5 updates/s" in text
    assert "p50 42 ms" in text and "p99 180 ms" in text


def test_render_without_workers_or_zones_says_so():
    text = _screen(Snapshot(taken_ms=1_700_000_000_000, latency=Latency(asked=1, answered=0)))
    assert "e2e n/a" in text and "0 zones" in text and "no zones registered" in text


def test_level_colours():
    assert "green" in str(level_cell("green").style)
    assert "yellow" in str(level_cell("yellow").style)
    assert "dark_orange" in str(level_cell("orange").style)
    assert "red" in str(level_cell("red").style)


def test_sort_key_puts_rings_in_order():
    ds = [{"zone_id": "a", "ring": None}, {"zone_id": "z", "ring": "outer"}, {"zone_id": "y", "ring": "core"},
          {"zone_id": "x", "ring": "inner"}]
    assert [d["zone_id"] for d in sorted(ds, key=zone_sort_key)] == ["y", "x", "z", "a"]


def test_demo_simulator_command_keeps_event_times_in_the_past():
    assert simulator_cmd("py", 1.0, 40.0)[-2:] == ["--speed", "1"]          # real time from now, no end
    fast = simulator_cmd("py", 10.0, 40.0)
    assert fast[fast.index("--duration") + 1] == "400"                         # ends now, when the demo ends


def test_render_marks_an_idle_latency_window():
    snap = Snapshot(taken_ms=1_700_000_000_000,
                    latency=Latency(asked=2, answered=2, count=0, p50=0.05, p99=0.1, idle_s=1.5))
    text = _screen(snap)
    assert "p50 50 ms · p99 100 ms (idle 1.5s) (2/2 workers)" in text
