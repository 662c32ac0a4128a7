"""`ZONEWATCH_GRACE_S` on the real path (Kafka -> worker -> sla.events), CONTRACT §3: with a grace
of 240 s, two calls are read when the stream clock C is exactly 240 s after one (inside the grace)
and 240.001 s after the other (just outside). A unit reached each 60 s after its call, read before
the calls; another fix of each unit at C + 20 s is read after them. The call inside the grace is
decided from the earlier fix (60 s), the one outside only from the later one (260.001 s)."""

from __future__ import annotations

import orjson
import pytest

from contract import topics
from tests import scenario
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

GRACE_S = 240
C = scenario.ms(scenario.local(12, 9, 0))           # the stream clock when the calls are read
AT = {"inside": scenario.PA, "outside": scenario.PB}  # 1.8 km apart: each unit near one call only
TS = {"inside": C - GRACE_S * 1000, "outside": C - GRACE_S * 1000 - 1}
UNIT = {"inside": "g1", "outside": "g2"}


def near(pt):
    return pt[0] + 0.0003, pt[1]   # 33 m north


def fix(unit, ts, pt):
    return {"unit_id": unit, "ts": ts, "lat": pt[0], "lon": pt[1], "status": "available", "kind": "foot"}


def test_a_call_read_at_the_grace_counts_earlier_fixes_and_one_read_past_it_does_not(deployment):
    dep = deployment(scenario.ZONES_FILE, partitions=4)
    port = dep.start_worker({"ZONEWATCH_GRACE_S": str(GRACE_S)})
    dep.wait_workers_joined()

    def accepted(source):
        return dep.metrics(port).get((source, "accepted"), 0)

    dep.produce(topics.GPS, [fix(UNIT[k], TS[k] + 60_000, near(AT[k])) for k in AT]
                + [fix("far", C, scenario.PNONE)])
    wait_until(lambda: accepted("gps") == 3 and {d["clock"] for d in dep.zone_docs().values()} == {C},
               what="the fixes read and the clock at C")
    dep.produce(topics.CALLS, [{"call_id": k, "ts": TS[k], "lat": AT[k][0], "lon": AT[k][1],
                                "category": "theft", "priority": 2} for k in AT])
    wait_until(lambda: accepted("calls") == 2, what="the calls read")
    dep.produce(topics.GPS, [fix(UNIT[k], C + 20_000, near(AT[k])) for k in AT])

    def arrivals():
        recs = [orjson.loads(m.value) for m in dep.read_topic(topics.SLA)]
        got = {r["call_id"]: (r["unit_id"], r["response_s"]) for r in recs if r["type"] == "arrived"}
        return len(got) == 2 and (got, recs)

    got, recs = wait_until(arrivals, timeout=60, what="both arrivals in sla.events")
    assert got == {"inside": ("g1", 60.0), "outside": ("g2", GRACE_S + 20.001)}
    assert not [r for r in recs if r["type"] == "breach"]   # 260 s: within the 5 minutes
