"""The small `make chaos`: the same fixed event set replayed into a fresh deployment per fault, each
end state compared with a clean run of the same events — zone documents, incidents.enriched and
zones.state (last record per key), the wall's open incidents (zw:incidents), unit positions — and
with the worker's own flow in-process fed the events in file order (streams/testing.py): zone
documents, and sla.events as exact record sets (no record missing, none extra, no breach of a call
that arrived within 300 s). zw:zone-updates is read for the whole run as a wall reads it: versions
strictly increase per zone and no zone is frozen on the wall. The clean run is held to the same.

- two workers: kill -9 one and start a replacement, freeze one (SIGSTOP) past the session timeout
  and resume it, a zombie whose writes must be refused (its zonewatch_fenced_writes_total or its
  log) unless it learns of its expulsion first (its log), start one more, stop one, kill -9 the
  zombie and replace it; tests/integration/test_store.py shows the fence itself deterministically;
- Redis flushed during and after the replay;
- Redis and then Kafka frozen (SIGSTOP) for 10 s each: the worker's zonewatch_dependency_up is 0
  during each and its log says so; nothing lost after SIGCONT;
- the broker refuses every record sent to sla.events and incidents.enriched for a while: the
  worker retries (zonewatch_output_retries_total > 0) and every record arrives.

(`make chaos` runs these at full length — 30 s outages, three workers, kills of a single worker, a
broker and a Redis restart — on a stack of its own.)"""

from __future__ import annotations

import pytest

from bench.chaos import Chaos, compare, details, event_set, reference, report_line, retracted
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

#: six simulated minutes: long enough for arrivals and breaches to be decided inside the event set
MINUTES = 6
OUTAGE_S = 10.0


@pytest.fixture(scope="module")
def clean_run(stack):
    chaos = Chaos(stack, REPO / ".stack" / "test")
    chaos.outage_s = OUTAGE_S
    events = event_set(minutes=MINUTES)
    chaos.ref = reference(events, chaos.partitions)
    return chaos, events, chaos.clean(events)


def check(chaos, name, events, clean, run):
    """`run` equal to the clean run; sla.events exactly the in-process reference's records (so a
    difference the clean run already has fails its own test, not every one); the nearest units
    within 2,077 m equal the reference's."""
    cmp = compare(clean, run, chaos.ref)
    lines = [report_line(name, len(events), cmp), *details(clean, run, cmp)]
    print("\n".join(lines))
    why = "\n".join(lines)
    assert cmp["events_counted"] == cmp["events_expected"] > 0, why
    assert (cmp["lost"], cmp["duplicated"]) == (0, 0), why
    assert cmp["docs_equal"], why
    assert chaos.ref["sla"], "the reference decided no arrival or breach: the event set is too short"
    # sla.events: the worker's own flow in-process, fed the events in file order (streams/testing.py)
    assert (cmp["ref_sla_lost"], cmp["ref_sla_extra"]) == ([], []), why
    assert retracted(chaos.ref["sla"], run["sla"]) == [] and cmp["sla_flipped"] == [], why
    assert cmp["ref_docs_equal"], why
    assert cmp["ref_nearest_equal"] and cmp["enriched_equal"], why   # positions as of the call's ts
    assert cmp["zones_state_equal"], why
    assert cmp["wall_equal"], "zw:incidents (the wall's open incidents) differs from the clean run\n" + why
    assert cmp["units_equal"], why
    v = cmp["versions"]
    assert v["problems"] == [], "zone versions that did not increase (zone, previous, next)\n" + why
    assert v["frozen"] == [], "zones the wall shows behind Redis or the final clock\n" + why
    seen = run.get("seen")
    if seen is not None:
        assert seen["ok"], seen["text"]


def test_clean_run_equals_the_in_process_reference(clean_run):
    """The reference of the other tests itself: the same zone documents and sla.events records as
    the worker's flow in-process (so no breach followed by an arrival within 300 s: CONTRACT §3, a
    breach is final), and zone versions that only increase."""
    chaos, events, clean = clean_run
    check(chaos, "clean", events, clean, clean)


def test_two_workers_kill_9_rebalances_and_a_zombie(clean_run):
    """Recommendations included: a partition taken over continues its previous owner's watermark
    (streams/watermark.py), so it decides no call before another worker's fixes of before the
    call reach it (the defect `make chaos` found with 2 and 3 workers on 2026-11-30)."""
    chaos, events, clean = clean_run
    check(chaos, "2 workers", events, clean, chaos.workers(events, 2))


def test_redis_flushed_during_and_after_a_replay(clean_run):
    chaos, events, clean = clean_run
    check(chaos, "redis flush x2", events, clean, chaos.redis_restart(events, flush=True))


def test_redis_then_kafka_frozen(clean_run):
    chaos, events, clean = clean_run
    check(chaos, f"redis+kafka frozen {OUTAGE_S:.0f}s", events, clean, chaos.freeze(events, "redis", "kafka"))


def test_refused_output_sends_are_retried_until_accepted(clean_run):
    chaos, events, clean = clean_run
    check(chaos, "refused send", events, clean, chaos.refused_send(events))
