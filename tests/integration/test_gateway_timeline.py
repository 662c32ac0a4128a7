"""GET /incidents/{call_id} through the real pipeline (events by POST /ingest -> Kafka -> worker ->
Redis -> gateway): the timeline equals the worker's incidents.enriched record (the call without its
caller, zones, ring, nearest units at call time, corroborating alerts) and its sla.events decision,
for an arrival and for a breach; 404 for an unknown id; never a caller or caller_ref; and /units
near the call with ETA, status, kind and ts, stale units left out (on the stream clock)."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from contract import topics
from contract.response import eta_s
from tests import scenario
from tests.integration.conftest import wait_until
from tests.integration.test_gateway import GatewayProcess
from tests.integration.test_intake import IAUTH, INGEST_TOKEN

pytestmark = pytest.mark.integration

CALLER = "13912345678"
CALL_FIELDS_NOT_IN_CALL = ("caller", "caller_ref", "zones", "ring", "nearest_units", "corroborating_alerts",
                           "processed_at")


def latest_by_key(records, types: tuple[str, ...] | None = None) -> dict[str, dict]:
    """The last record per key (of `types` only, when given: a call's sla.events key also carries its
    on-scene `tiers` record, which is not the arrival decision)."""
    out = {}
    for r in records:
        v = orjson.loads(r.value)
        if types is None or v.get("type") in types:
            out[r.key.decode()] = v   # in offset order per key: the last one wins
    return out


def test_timeline_equals_the_enriched_record_and_the_sla_decision(deployment):
    dep = deployment(scenario.ZONES_FILE, partitions=2)
    wport = dep.start_worker()
    gw = GatewayProcess(dep, wport, env={"ZONEWATCH_INGEST_TOKENS": INGEST_TOKEN})

    def ingest(source, records):
        r = httpx.post(f"{gw.url}/ingest/{source}", content=orjson.dumps(records), timeout=30,
                       headers={**IAUTH, "Content-Type": "application/json"})
        assert r.status_code == 200 and r.json() == {"accepted": len(records), "rejected": []}, r.text

    now = int(time.time() * 1000)
    t0 = now - 20 * 60_000
    a_lat, a_lon = scenario.PA
    b_lat, b_lon = scenario.PB
    try:
        # units before the calls: u-car 555 m north of A (available), u-foot at A2 too, u-busy busy
        ingest("gps", [
            {"unit_id": "u-car", "ts": t0 - 5000, "lat": scenario.PA2[0], "lon": scenario.PA2[1], "kind": "car"},
            {"unit_id": "u-foot", "ts": t0 - 4000, "lat": scenario.PA2[0], "lon": scenario.PA2[1] + 0.001,
             "kind": "foot"},
            {"unit_id": "u-busy", "ts": t0 - 3000, "lat": a_lat + 0.001, "lon": a_lon, "status": "busy"},
        ])
        # an alert 100 m from A a minute before its call (corroborates), one far away (does not)
        ingest("alerts", [
            {"alert_id": "al-near", "camera_id": "cam-1", "ts": t0 - 60_000, "lat": a_lat + 0.0009, "lon": a_lon,
             "type": "fight", "confidence": 0.8},
            {"alert_id": "al-far", "camera_id": "cam-2", "ts": t0 - 60_000, "lat": b_lat, "lon": b_lon + 0.02,
             "type": "fight", "confidence": 0.8},
        ])
        wait_until(lambda: dep.redis.hlen("zw:unit-info") == 3, what="units in zw:unit-info")
        ingest("calls", [
            {"call_id": "tl-A", "ts": t0, "lat": a_lat, "lon": a_lon, "category": "violent", "priority": 1,
             "caller": CALLER, "lang": "zh", "text": "fight at the gate"},
            {"call_id": "tl-B", "ts": t0 + 1000, "lat": b_lat, "lon": b_lon, "category": "theft", "priority": 3,
             "caller": CALLER},
        ])
        # u-car reaches A 150 s after the call; a far fix 400 s after B's call moves the watermark
        # past B's deadline (B breaches, nobody came)
        ingest("gps", [{"unit_id": "u-car", "ts": t0 + 150_000, "lat": a_lat, "lon": a_lon, "kind": "car"}])
        ingest("gps", [{"unit_id": "u-far", "ts": t0 + 401_000, "lat": 34.85, "lon": a_lon}])   # 15.5 km north, no zone

        sla = wait_until(lambda: (s := latest_by_key(dep.consume_all(topics.SLA, 2, timeout=5),
                                                                  ("arrived", "breach")))
                         and len(s) == 2 and s, timeout=90, what="both SLA decisions")
        assert sla["tl-A"]["type"] == "arrived" and sla["tl-B"]["type"] == "breach"
        enriched = latest_by_key(dep.consume_all(topics.INCIDENTS, 2, timeout=10))

        def timeline(cid):
            r = gw.get(f"/incidents/{cid}")
            return r.json() if r.status_code == 200 else None

        tl = {cid: wait_until(lambda c=cid: (t := timeline(c)) and t["decision"] and t, timeout=60,
                              what=f"the timeline of {cid} with its decision") for cid in ("tl-A", "tl-B")}
        for cid, t in tl.items():
            e = enriched[cid]
            assert t["call_id"] == cid
            assert t["call"] == {k: v for k, v in e.items() if k not in CALL_FIELDS_NOT_IN_CALL}
            for k in ("zones", "ring"):
                assert t[k] == e[k], (cid, k)
            # the timeline's entries are the enriched record's plus where each was (the wall's map)
            for k, where in (("nearest_units", ("lat", "lon", "ts")), ("corroborating_alerts", ("lat", "lon"))):
                assert [{f: v for f, v in x.items() if f not in where} for x in t[k]] == e[k], (cid, k)
            s = sla[cid]
            assert t["decision"] == {k: s[k] for k in ("type", "unit_id", "response_s", "ts")}, cid
        a, b = tl["tl-A"], tl["tl-B"]
        assert a["status"] == "arrived" and a["arrival"] == {"unit_id": "u-car", "response_s": 150.0,
                                                              "ts": t0 + 150_000}
        assert a["zones"] == ["A"] and a["call"]["text"] == "fight at the gate"
        assert [x["alert_id"] for x in a["corroborating_alerts"]] == ["al-near"]
        assert [u["unit_id"] for u in a["nearest_units"]] == ["u-car", "u-foot"]   # u-busy is not available
        assert all({"lat", "lon", "ts"} <= set(u) for u in a["nearest_units"])  # found exactly: positions known
        assert all({"lat", "lon"} <= set(x) for x in a["corroborating_alerts"])
        whats = [e["what"] for e in a["events"]]
        assert whats[:2] == ["alert", "call"] and whats[-1] == "arrived", whats   # on the stream clock
        assert "recommended" in whats and [e["ts"] for e in a["events"]] == sorted(e["ts"] for e in a["events"])
        assert b["status"] == "breached" and b["breach"] == {"ts": t0 + 1000 + 300_000}
        assert b["decision"]["type"] == "breach" and b["decision"]["unit_id"] is None
        # the caller never: not in clear, not as a reference
        for cid in ("tl-A", "tl-B"):
            raw = gw.get(f"/incidents/{cid}").text
            assert CALLER not in raw and "caller" not in raw, cid
        assert "caller_ref" in enriched["tl-A"]   # the enriched record has one; the timeline drops it

        # unknown ids: 404 with a JSON body; tokens as everywhere
        r = gw.get("/incidents/no-such-call")
        assert r.status_code == 404 and "no incident" in r.json()["error"]
        assert gw.get("/incidents/" + "x" * 65).status_code == 404
        assert gw.get("/incidents/tl-A", headers={}).status_code == 401
        assert gw.get("/incidents/tl-A", headers=IAUTH).status_code == 403

        # /units near A on the stream clock (t0 + 401 s): u-car's fix at t0 + 150 s is stale
        # (> 120 s), u-foot's too; only u-far's is fresh and it is far away
        r = gw.get(f"/units?near={a_lat},{a_lon}&radius=100000")
        assert r.status_code == 200 and [u["unit_id"] for u in r.json()] == ["u-far"]
        far = r.json()[0]
        assert (far["status"], far["kind"], far["ts"]) == ("available", "car", t0 + 401_000)
        assert far["eta_s"] == eta_s(far["distance_m"], "car")
        # a fresh foot unit and a fresh busy one near A: both listed, ETA by kind; ?status= filters
        ingest("gps", [{"unit_id": "u-foot", "ts": t0 + 402_000, "lat": scenario.PA2[0], "lon": scenario.PA2[1],
                        "kind": "foot"},
                       {"unit_id": "u-busy", "ts": t0 + 402_000, "lat": a_lat + 0.001, "lon": a_lon, "status": "busy"}])
        units = wait_until(lambda: (u := gw.get(f"/units?near={a_lat},{a_lon}&radius=5000").json())
                           and len(u) == 2 and u, timeout=30, what="the fresh units near A")
        assert [u["unit_id"] for u in units] == ["u-busy", "u-foot"]      # nearest first
        for u in units:
            assert u["eta_s"] == eta_s(u["distance_m"], u["kind"]) and u["ts"] == t0 + 402_000
        assert units[1]["kind"] == "foot" and 540 < units[1]["distance_m"] < 570
        assert units[1]["eta_s"] == round(units[1]["distance_m"] * 1.3 / 1.4)
        r = gw.get(f"/units?near={a_lat},{a_lon}&radius=5000&status=available")
        assert [u["unit_id"] for u in r.json()] == ["u-foot"]
        assert gw.get(f"/units?near={a_lat},{a_lon}&status=parked").status_code == 400
    finally:
        gw.stop()
