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
    distrust,
    health_cell,
    level_cell,
    parse_docs,
    reach_cell,
    render,
    response_cells,
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


def _hdoc(zid, *, kind="grid", ring=None, known=0, silent=0, quiet=0, present=0, gps=None, reach=None):
    """`gps`: seconds since the last patrol fix inside, on the document's clock (last_event_ts, v3)."""
    d = doc(zid, ring=ring, present=present)
    d["kind"] = kind
    d["health"] = {"cameras_known": known, "cameras_silent": silent, "units_quiet": quiet,
                   "last_event_ts": {"calls": None, "gps": None if gps is None else d["clock"] - gps * 1000,
                                     "alerts": None}}
    if reach is not None:
        d["reach"] = {"within_3m": reach[0], "within_5m": reach[1]}
    return d


def test_distrust_is_the_walls_rule():
    assert distrust(_hdoc("ok", known=3, gps=30)) == []
    assert distrust(_hdoc("cam", known=3, silent=2)) == ["2/3 cameras silent"]
    # quiet units matter only while no unit is present
    assert distrust(_hdoc("quiet", quiet=1)) == ["1 units quiet, none present"]
    assert distrust(_hdoc("covered", quiet=1, present=2)) == []
    # no fix from inside for more than 15 min; none in 24 h (null) is not a reason on its own
    assert distrust(_hdoc("stale", gps=901)) == ["no patrol fix for 15 min"]
    assert distrust(_hdoc("edge", gps=900)) == []
    assert distrust(_hdoc("never", gps=None)) == []
    assert distrust(_hdoc("all", known=1, silent=1, quiet=1, gps=1800)) == \
        ["1/1 cameras silent", "1 units quiet, none present", "no patrol fix for 30 min"]
    assert distrust(doc("old-doc")) == []          # a document without health (an older worker)
    v2 = _hdoc("v2")   # a document of a worker before v3: the age itself
    v2["health"] = {**v2["health"], "last_event_age_s": {"calls": None, "gps": 901, "alerts": None}}
    del v2["health"]["last_event_ts"]
    assert distrust(v2) == ["no patrol fix for 15 min"]


def test_health_and_reach_cells():
    ok = health_cell(_hdoc("ok", known=3, gps=30))
    assert ok.plain == "✓ 0/3 · 0" and (ok.spans[0].start, str(ok.spans[0].style)) == (0, "green")
    bad = health_cell(_hdoc("bad", known=3, silent=2, quiet=1, gps=1200))
    assert bad.plain == "⚠ 2/3 · 1 · no fix 20m"
    assert (bad.spans[0].start, bad.spans[0].end, str(bad.spans[0].style)) == (0, 2, "bold yellow")
    assert health_cell(doc("old-doc")).plain == "–"
    assert reach_cell(_hdoc("r", reach=(0.82, 0.97))).plain == "82%"
    low = reach_cell(_hdoc("r", reach=(0.25, 0.25)))
    assert low.plain == "25%" and "red" in str(low.style)
    assert reach_cell(_hdoc("r", reach=(1.0, 1.0))).plain == "100%"
    assert reach_cell(doc("old-doc")).plain == "–"


def test_sort_key_puts_route_segments_after_areas_in_course_order():
    ds = [_hdoc("course/10", kind="route"), _hdoc("course/2", kind="route"), _hdoc("zz", kind="grid"),
          _hdoc("aid-1", kind="other"), _hdoc("core", kind="venue", ring="core"), _hdoc("course/0", kind="route")]
    assert [d["zone_id"] for d in sorted(ds, key=zone_sort_key)] == \
        ["core", "aid-1", "zz", "course/0", "course/2", "course/10"]


def test_render_shows_health_reach_and_routes_of_the_health_scenario():
    """The hand-computed documents of tests/scenario_health.py at its first moment, as Redis holds them."""
    import orjson

    from tests import scenario_health as sc

    docs = {z: {**d, "version": 2, "clock": sc.T1} for z, d in sc.EXPECTED[1].items()}
    ids = sorted(docs)
    zones = parse_docs(ids, [orjson.dumps(docs[i]) for i in ids])
    text = _screen(Snapshot(taken_ms=sc.T1 + 1000, zones=zones))
    rows = [line.split()[0] for line in text.splitlines() if line.split() and line.split()[0] in docs]
    assert rows == ["core", "inner", "outer", "D", "G1", "G2", "aid-1", "course/0", "course/1", "course/2"]
    lines = {line.split()[0]: line for line in text.splitlines() if line.split() and line.split()[0] in docs}
    # G1: two of three cameras silent (cam-s, cam-o offline); car-1 there: 100 % in 3 min
    assert "⚠ 2/3 · 0" in lines["G1"] and "100%" in lines["G1"]
    # G2: foot-q quiet and no unit present: untrusted, nothing reached
    assert "⚠ 0/1 · 1" in lines["G2"] and " 0%" in lines["G2"]
    assert "25%" in lines["D"] and "✓ 0/0 · 0" in lines["D"]
    assert "Course 2–2.745 km" in lines["course/2"] and "route" in lines["course/2"]
    assert "other" in lines["aid-1"] and "grid" in lines["G1"] and "district" in lines["D"]
    assert "⚠ 2 untrusted" in text


def test_response_cells_are_the_walls_shares_breaches_and_percentiles():
    """By hand: 2 decided (1 within 5 min at 90 s, 1 breach reached late at 350 s) -> 0 % / 50 % / 50 %."""
    shares, breaches, pct = response_cells({"response": {"arrived": 2, "within_1m": 0, "within_3m": 1,
                                                         "within_5m": 1, "breaches": 1, "p50_s": 90, "p90_s": 350}})
    assert (shares.plain, breaches.plain, pct.plain) == ("0% / 50% / 50%", "1", "1:30 / 5:50")
    assert "red" in str(breaches.style)
    shares, breaches, pct = response_cells({"response": {"arrived": 3, "within_1m": 1, "within_3m": 2,
                                                         "within_5m": 3, "breaches": 0, "p50_s": 100, "p90_s": 250}})
    assert (shares.plain, breaches.plain, pct.plain) == ("33% / 67% / 100%", "0", "1:40 / 4:10")
    assert "red" not in str(breaches.style)
    # two breaches never reached, one arrival at 60 s: 3 decided, 1 arrived
    shares, _b, pct = response_cells({"response": {"arrived": 1, "within_1m": 1, "within_3m": 1, "within_5m": 1,
                                                   "breaches": 2, "p50_s": 60, "p90_s": 60}})
    assert (shares.plain, pct.plain) == ("33% / 33% / 33%", "1:00 / 1:00")
    nothing = {"arrived": 0, "within_1m": 0, "within_3m": 0, "within_5m": 0, "breaches": 0, "p50_s": None,
               "p90_s": None}
    assert [c.plain for c in response_cells({"response": nothing})] == ["– / – / –", "0", "– / –"]
    assert [c.plain for c in response_cells({"response": {}})] == ["–", "–", "–"]


def test_render_shows_each_zones_response_of_the_scenario():
    """tests/scenario.py's hand-computed documents: grids A and B 3 breaches, none reached; the
    venue rings one call reached after 120 s."""
    import orjson

    from tests import scenario as sc

    docs = {z: {**d, "version": 1, "clock": sc.FINAL_CLOCK} for z, d in sc.EXPECTED.items()}
    ids = sorted(docs)
    text = _screen(Snapshot(taken_ms=sc.FINAL_CLOCK, zones=parse_docs(ids, [orjson.dumps(docs[i]) for i in ids])))
    lines = {line.split()[0]: line for line in text.splitlines() if line.split() and line.split()[0] in docs}
    assert "0% / 0% / 0%" in lines["A"] and " 3 " in lines["A"] and "– / –" in lines["A"]
    for ring in ("outer", "inner", "core"):
        assert "0% / 100% / 100%" in lines[ring] and "2:00 / 2:00" in lines[ring], lines[ring]


# --- the duty plan under the zones (CONTRACT §10) -------------------------------------------------

class _DutyRedis:
    """The three reads of Watcher.read_duty on a dict."""

    def __init__(self, data: dict):
        self.data = data

    def smembers(self, key):
        return set(self.data.get(key, ()))

    def mget(self, ks):
        return [self.data.get(k) for k in ks]

    def get(self, key):
        return self.data.get(key)


def test_watch_lists_posts_checkpoints_and_the_phase_under_the_zones():
    import orjson

    from contract import keys
    from zonewatch.watch import Watcher

    t = 1_686_535_200_000   # 2023-06-12 10:00:00 +08:00
    gate = {"post_id": "gate", "name": "A区大门", "status": "understaffed", "present": 1, "required": 2,
            "since": t + 780_000, "unit_ids": ["u2"], "version": 4}
    east = {"post_id": "east", "name": "东门", "status": "manned", "present": 2, "required": 2, "since": t,
            "unit_ids": ["u1", "u3"], "version": 2}
    bridge = {"checkpoint_id": "bridge", "name": "B区桥", "last_visit": t + 780_000, "last_unit": "u1",
              "every_s": 300, "overdue": True, "overdue_since": t + 1_080_001, "version": 5}
    phase = {"name": "临战", "source": "operator", "by": "值班长 王", "since": t + 1_200_000, "previous": "决战"}
    redis = _DutyRedis({keys.POSTS: [b"gate", b"east", b"gone"], keys.CHECKPOINTS: [b"bridge"],
                        keys.post("gate"): orjson.dumps(gate), keys.post("east"): orjson.dumps(east),
                        keys.checkpoint("bridge"): orjson.dumps(bridge), keys.PHASE: orjson.dumps(phase)})
    w = Watcher("redis://x", [], client=redis, latency=LatencySampler([], fetch=lambda u, t: ""))
    posts, cps, ph = w.read_duty()
    assert [p["post_id"] for p in posts] == ["east", "gate"] and cps == [bridge] and ph == phase  # "gone": none
    snap = Snapshot(taken_ms=t + 1_300_000, zones=[], posts=posts, checkpoints=cps, phase=ph)
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(render(snap, tz_name="Asia/Shanghai"))
    text = out.getvalue()
    assert "duty  phase 临战 (set by 值班长 王 at 10:20:00)" in text
    assert "manned 1 understaffed 1 empty 0" in text and "checkpoints overdue 1/1" in text
    lines = text.splitlines()
    gate_line = next(line for line in lines if line.lstrip().startswith("gate"))
    assert "understaffed" in gate_line and "1 / 2" in gate_line and "10:13:00" in gate_line and "u2" in gate_line
    bridge_line = next(line for line in lines if line.lstrip().startswith("bridge"))
    assert "10:13:00" in bridge_line and "u1" in bridge_line and "300 s" in bridge_line \
        and "since 10:18:00" in bridge_line
    # without a plan nothing of it appears
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(render(Snapshot(taken_ms=t), tz_name="Asia/Shanghai"))
    assert "duty" not in out.getvalue()
