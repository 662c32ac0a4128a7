"""Contract v3 on the real path (Kafka -> worker -> Redis and sla.events): on-scene tiers met and not
met, units.by_force, coverage over 60 min and 8 h (with a fix outside the zone's polygon in a cell
whose centre is inside, and one too old to count), health.last_event_ts. Expectations by hand.

Zones (written here): H = the 7 H3 resolution-9 cells of a disk around P0, the centre of the cell of
(34.7466, 113.6253), its polygon shrunk by 0.0002° (~20 m) so that the outer cells' rims lie outside it; the
ring-2 cells' centres are ~1.5 cells away, so exactly these 7 cells have their centre in H. G = the same
disk ~5 km east, not shrunk. 4 zone-events partitions, so H and G may sit on different ones, and the
border fix (in no zone) has a partition of its own by its unit.

Timeline (T = 2023-06-12 10:00:00 +08:00; the last fix, at T + 600 s, is the final clock):
  t1 in H at P0, T        : a (police, +30 s), b (auxiliary, +100 s), c (volunteer, +200 s) within 20 m
                            -> on scene 1/2/3 by 1/3/5 min: met (1/2/3 required)
  t2 in H at P4 (the centre of another cell of H, ~300 m from P0), T + 20 s:
                            d (security) at P4, +50 s -> 1/1/1: not met
  g1 in G, T + 50 s       : nobody -> 0/0/0, not met
  at T + 560..590 s a, b, c, d, e ("militia": police), f (no force: police) report at P0: present in H
  coverage fixes of unit z: T - 10 min at the border point (outside H, in cell C1 whose centre is in H),
                            T - 3 h in cell C2, T - 9 h in cell C3 (beyond 8 h)
H's cells with a fix: P0's (a..f), P4's (d), C1 (T - 10 min), C2 (T - 3 h; 8 h only), C3 (neither):
  coverage 60m = 3/7 = 0.43, 8h = 4/7 = 0.57. units: present 6, by_force police 3 (a, e, f),
  auxiliary 1, volunteer 1, security 1. response: tiers_met 1, tiers_decided 2 (T + 300 s and
  T + 320 s, within the last 60 min). last_event_ts.gps = T + 590 s (f, the latest fix inside H).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import h3
import orjson
import pytest
import shapely
from shapely.geometry import Point, Polygon

from contract import topics
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

T = int(datetime(2023, 6, 12, 10, 0, tzinfo=timezone(timedelta(hours=8))).timestamp() * 1000)
S = 1000
C0 = h3.latlng_to_cell(34.7466, 113.6253, 9)
P0 = h3.cell_to_latlng(C0)                                # the centre of its cell
RING = sorted(h3.grid_ring(C0, 1))
C1, C2, C3, C4 = RING[:4]
P4 = h3.cell_to_latlng(C4)
G0 = h3.latlng_to_cell(P0[0], P0[1] + 0.055, 9)          # ~5 km east


def disk_polygon(centre: str, shrink_deg: float = 0.0):
    cells = h3.grid_disk(centre, 1)
    union = shapely.union_all([Polygon([(lo, la) for la, lo in h3.cell_to_boundary(c)]) for c in cells])
    return union.buffer(-shrink_deg) if shrink_deg else union


H_POLY = disk_polygon(C0, 0.0002)
G_POLY = disk_polygon(G0)


def border_point() -> tuple[float, float]:
    """C1's vertex farthest from P0, moved 5 m toward C1's centre: in C1, outside H's polygon."""
    clat, clon = h3.cell_to_latlng(C1)
    vlat, vlon = max(h3.cell_to_boundary(C1), key=lambda v: (v[0] - P0[0]) ** 2 + (v[1] - P0[1]) ** 2)
    f = 5 / 190   # ~5 m of the ~190 m from a res-9 vertex to its centre
    return vlat + (clat - vlat) * f, vlon + (clon - vlon) * f


EDGE = border_point()


def zones_file(tmp_path):
    def feature(zid, poly):
        return {"type": "Feature", "id": zid, "properties": {"name": zid, "kind": "grid"},
                "geometry": shapely.geometry.mapping(poly)}
    path = tmp_path / "zones_v3.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature("H", H_POLY), feature("G", G_POLY)]}))
    return path


def fix(unit, ts, at, force=None, status="available"):
    ev = {"unit_id": unit, "ts": ts, "lat": at[0], "lon": at[1], "status": status, "kind": "foot"}
    if force is not None:
        ev["force"] = force
    return ev


def near(at, metres_north):
    return at[0] + metres_north / 111_226.0, at[1]


CALLS = [
    {"call_id": "t1", "ts": T, "lat": P0[0], "lon": P0[1], "category": "violent", "priority": 1},
    {"call_id": "t2", "ts": T + 20 * S, "lat": P4[0], "lon": P4[1], "category": "theft", "priority": 2},
    {"call_id": "g1", "ts": T + 50 * S, "lat": h3.cell_to_latlng(G0)[0], "lon": h3.cell_to_latlng(G0)[1],
     "category": "fraud", "priority": 3},
]
OLD_FIXES = [fix("z", T - 9 * 3600 * S, h3.cell_to_latlng(C3), status="off_duty"),
             fix("z", T - 3 * 3600 * S, h3.cell_to_latlng(C2), status="busy"),
             fix("z", T - 600 * S, EDGE, "security", status="busy")]
ON_SCENE = [fix("a", T + 30 * S, near(P0, 20), "police"), fix("d", T + 70 * S, P4, "security"),
            fix("b", T + 100 * S, near(P0, -15), "auxiliary"), fix("c", T + 200 * S, near(P0, 10), "volunteer")]
PRESENT = [fix(u, T + (560 + 6 * i) * S, P0, force) for i, (u, force) in
           enumerate((("a", "police"), ("b", "auxiliary"), ("c", "volunteer"), ("d", "security"),
                      ("e", "militia"), ("f", None)))]
FINAL_CLOCK = T + 600 * S
DRIVER = [fix("drv", FINAL_CLOCK, h3.cell_to_latlng(G0), "police")]   # the final clock, in G


def test_geometry_of_the_scenario():
    """The facts the hand figures rest on, checked with shapely (not with zonewatch's code)."""
    centres_in_h = {c for c in h3.grid_disk(C0, 4) if H_POLY.contains(Point(h3.cell_to_latlng(c)[::-1]))}
    assert centres_in_h == set(h3.grid_disk(C0, 1))                 # exactly 7 cells
    assert h3.latlng_to_cell(*EDGE, 9) == C1 and not H_POLY.contains(Point(EDGE[1], EDGE[0]))
    assert not G_POLY.contains(Point(EDGE[1], EDGE[0]))
    for f in ON_SCENE + PRESENT:
        assert H_POLY.contains(Point(f["lon"], f["lat"]))
    assert h3.latlng_to_cell(*P4, 9) == C4
    assert {h3.latlng_to_cell(f["lat"], f["lon"], 9) for f in ON_SCENE + PRESENT} == {C0, C4}


def test_tiers_forces_and_coverage_through_kafka_and_redis(deployment, tmp_path):
    dep = deployment(zones_file(tmp_path), partitions=4)
    dep.start_worker()
    dep.wait_workers_joined()
    dep.produce(topics.GPS, OLD_FIXES)
    dep.produce(topics.CALLS, CALLS)
    dep.produce(topics.GPS, ON_SCENE + PRESENT + DRIVER)

    def done():
        docs = dep.zone_docs()
        h, g = docs.get("H"), docs.get("G")
        if not h or not g or h["clock"] != FINAL_CLOCK:
            return None
        ready = h["response"]["tiers_decided"] == 2 and g["response"]["tiers_decided"] == 1
        return docs if ready else None

    docs = wait_until(done, what="tiers decided in H and G")
    h = docs["H"]
    assert h["units"] == {"present": 6, "available": 6,
                          "by_force": {"police": 3, "auxiliary": 1, "volunteer": 1, "security": 1}}
    assert h["coverage"] == {"60m": 0.43, "8h": 0.57}
    assert (h["response"]["tiers_met"], h["response"]["tiers_decided"]) == (1, 2)
    assert h["health"]["last_event_ts"] == {"calls": T + 20 * S, "gps": T + 590 * S, "alerts": None}
    g = docs["G"]
    assert (g["response"]["tiers_met"], g["response"]["tiers_decided"]) == (0, 1)
    assert g["units"]["by_force"] == {"police": 1, "auxiliary": 0, "volunteer": 0, "security": 0}

    sla = wait_until(lambda: (evs := [orjson.loads(m.value) for m in dep.consume_all(topics.SLA, 10, 5)])
                     and sum(e["type"] == "tiers" for e in evs) >= 3 and evs, what="three tiers records")
    got = sorted((e["call_id"], e["zone_ids"], e["on_scene"], e["met"], e["ts"]) for e in sla if e["type"] == "tiers")
    assert got == [("g1", ["G"], {"1m": 0, "3m": 0, "5m": 0}, False, T + 350 * S),
                   ("t1", ["H"], {"1m": 1, "3m": 2, "5m": 3}, True, T + 300 * S),
                   ("t2", ["H"], {"1m": 1, "3m": 1, "5m": 1}, False, T + 320 * S)]
