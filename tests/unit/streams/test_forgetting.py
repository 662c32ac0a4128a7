"""Bounded memory over a day of churning device ids (docs/DESIGN.md "Bounded memory"), through the
worker's real flow in-process (streams/testing.py) with the worker's sweep
(`Router.forget_silent`, what IngestStage.forget_silent runs every FORGET_S) every 5 minutes of
stream clock.

27 hours of stream clock: 20 units at a time, each unit id reporting for 5 minutes (a fix a minute)
and then replaced by a new id (6,259 ids), and 4 cameras, whose ids change every hour for the first
2 hours (then they stay, reporting hourly). With ZONEWATCH_UNIT_FORGET_S at 2 h, every registry
keyed by a unit or camera id holds, at every hour, only ids that reported within its own bound (an
oracle from the generated reports): ingest's maps exactly those of the last 2 h; the partitions' fix
memory those of the forget bound, presence those of the quiet bound (30 min), the incidents'
look-back those of the grace, cameras those of the 24 h they stay known (CONTRACT §3 "Health"). The
memory the worker's code holds (tracemalloc, allocations in streams/ made from hour 9 on) grows by
less than 128 KiB from hour 12 to hour 18 while 1,440 unit ids come and go: 80 KiB is measured,
bounded caches filling (the local date of each quarter hour, a camera's memory of up to 128 status
reports); without the router's sweep it is +306 KiB, with the fix memory kept 24 h +1.4 MiB, with
the incidents' names renewed only beside 1024 calls +392 KiB.
"""

from __future__ import annotations

import gc
import tracemalloc
import zlib
from pathlib import Path

import orjson

import streams
from contract import topics
from contract.response import CAMERA_KNOWN_MS, UNIT_QUIET_MS
from contract.settings import Settings
from streams.testing import Msg, Pipeline
from streams.zone_state import PRUNE_EVERY_MS
from tests import scenario

T0 = scenario.ms(scenario.local(12, 0, 0))
MIN = 60_000
HOUR = 60 * MIN
FORGET_MS = 2 * HOUR
UNITS, UNIT_LIFE = 20, 5 * MIN
CAMERAS, CAMERA_LIFE, CAMERA_CHURN = 4, HOUR, 2 * HOUR
SWEEP = 5 * MIN
BATCH = 40            # messages: 2 minutes of reports, the granularity at which the clock moves
LAG = 2 * MIN + 1
HOURS = 27
STREAMS = str(Path(streams.__file__).parent / "*")   # memory held by the worker's code
# inside the test zones (A, B, the venue rings) and around them; one spot in no zone
SPOTS = [scenario.PA, scenario.PB, scenario.PAB, scenario.PCORE, scenario.PIN, scenario.PA2, scenario.PB2,
         scenario.PNONE]


def reports(t0: int, t1: int) -> list[tuple[str, dict]]:
    """(topic, event) of every report with t0 <= ts < t1: fixes each minute, camera status every 10."""
    out = []
    for t in range(t0, t1, MIN):
        for slot in range(UNITS):
            uid = f"u{slot}-{(t - T0 + slot * UNIT_LIFE // UNITS) // UNIT_LIFE}"
            lat, lon = SPOTS[(slot + t // MIN) % len(SPOTS)]
            out.append((topics.GPS, {"unit_id": uid, "ts": t + slot * 100, "lat": lat, "lon": lon,
                                     "status": "available" if slot % 3 else "busy", "kind": "car"}))
        churning = t - T0 < CAMERA_CHURN
        if (t - T0) % (10 * MIN if churning else HOUR) == 0:
            for slot in range(CAMERAS):
                # camera ids churn for the first hours, then stay and report hourly (their memory of
                # reports, up to 128 each, then fills slowly)
                gen = (t - T0 + slot * CAMERA_LIFE // CAMERAS) // CAMERA_LIFE if churning else "steady"
                cam = f"cam{slot}-{gen}"
                lat, lon = SPOTS[slot * 2]
                out.append((topics.STATUS, {"camera_id": cam, "ts": t + 50 + slot, "lat": lat, "lon": lon,
                                            "online": True}))
    return out


def test_a_day_of_churning_unit_and_camera_ids_leaves_memory_bounded(monkeypatch):
    monkeypatch.setenv("ZONEWATCH_ZONES", str(scenario.ZONES_FILE))
    monkeypatch.setenv("ZONEWATCH_UNIT_FORGET_S", str(FORGET_MS // 1000))
    monkeypatch.setenv("ZONEWATCH_PARTITIONS", "4")
    s = Settings.from_env()
    pipe = Pipeline(s)
    router = pipe.router
    last: dict[str, int] = {}     # the oracle: id -> ts of its latest report
    traced: dict[int, int] = {}
    offset = 0

    def since(ts: int, prefix: str) -> set[str]:
        return {i for i, t in last.items() if t >= ts and i.startswith(prefix)}

    t = T0
    for hour in range(HOURS):
        if hour == 9:   # 3 h after the last camera churn, longer than any unit id stays in memory
            gc.collect()
            tracemalloc.start()
        for _ in range(HOUR // SWEEP):
            batch = reports(t, t + SWEEP)
            msgs = []
            for topic, ev in batch:
                key = ev.get("unit_id") or ev["camera_id"]
                last[key] = max(last.get(key, 0), ev["ts"])
                msgs.append(Msg(topic, zlib.crc32(key.encode()) % 2, offset, None, orjson.dumps(ev), 1))
                offset += 1
            pipe.feed(msgs, batch=BATCH)
            t += SWEEP
            assert router.forget_silent() == router.clock - FORGET_MS
        clock = router.clock
        if hour in (12, 18):
            gc.collect()
            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, STREAMS)])
            traced[hour] = sum(stat.size for stat in snap.statistics("filename"))
        if hour == 18:
            tracemalloc.stop()

        # ingest (streams/routing.py): exactly the devices of the last 2 h
        recent_units, recent_cams = since(clock - FORGET_MS, "u"), since(clock - FORGET_MS, "cam")
        assert set(router.units) == recent_units, hour
        assert set(router.positions) == recent_units
        assert set(router.unit_homes) <= recent_units
        assert set(router.cameras) == recent_cams
        # the partitions (streams/zone_state.py, streams/incidents.py, streams/reach.py)
        states = [h.state for h in pipe.stage.held.values()]
        # each bound, plus how often it is applied, plus how far the clock moves in one batch
        fix_memory = since(clock - FORGET_MS - PRUNE_EVERY_MS - LAG, "u")
        present = since(clock - UNIT_QUIET_MS - PRUNE_EVERY_MS - LAG, "u")
        # fixes held for the grace and the staleness bound, by whole minutes; the ids of their
        # units are renewed every 10 minutes
        lookback = since(clock - s.grace_ms - s.unit_stale_ms - MIN - 10 * MIN - LAG, "u")
        known = since(clock - CAMERA_KNOWN_MS - PRUNE_EVERY_MS - LAG, "cam")
        for st in states:
            assert set(st.seen_fix) <= fix_memory, hour
            assert set(st.unit_latest) <= present
            assert all(set(agg.units) <= present for agg in st.zones.values())
            assert set(st.reach.latest) <= since(clock - s.unit_stale_ms - LAG, "u")
            assert set(st.incidents._names) <= lookback
            assert set(st.camera_latest) | set(st.camera_status) | set(st.seen_status) <= known, hour
            assert all(set(agg.cameras) <= known for agg in st.zones.values())
    assert len(since(0, "u")) > HOURS * 60 // 5 * UNITS    # 6,259 unit ids came and went
    assert since(0, "cam") - known    # the first cameras were forgotten after their 24 h
    assert traced[18] - traced[12] < 128 * 1024, traced
