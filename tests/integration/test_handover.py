"""Zone versions across handovers (issue 11, "Fenced handover"): forced rebalances with two and
three workers during a replay. A reader follows zw:zone-updates from the start the way the wall
does (XREAD; an update whose version is not above the one held is dropped): every zone's versions
must strictly increase across owners, never equal, never lower, and at the end the wall must show
every zone at the final clock, as Redis holds it (a repeated version would have frozen it)."""

from __future__ import annotations

import signal

import pytest

from bench.chaos import Chaos, event_set, final_clock, produce_chunks, settle
from contract.settings import DEMO_ZONES
from contract.zones import load_zones
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("n", [2, 3])
def test_versions_strictly_increase_across_handovers(stack, n):
    chaos = Chaos(stack, REPO / ".stack" / "test", seed=n)
    events = event_set(minutes=3)
    with chaos.running(f"handover{n}", workers=n) as dep:
        moves = [
            lambda: dep.start_worker(),                                   # scale out: every partition moves
            lambda: dep.kill_worker(dep.live()[0], signal.SIGTERM),       # the oldest leaves its groups
            lambda: (dep.kill_worker(dep.live()[0], signal.SIGKILL),      # kill -9 (its partitions move after
                     dep.start_worker()),                                 # the session timeout) and a new one
        ]

        def between(i):
            if i < len(moves):
                moves[i]()

        produce_chunks(dep, events, len(moves) + 1, between)
        clock = final_clock(events)
        docs = settle(dep, clock)
        reader = dep.reader
        reader.catch_up()
        takeovers = dep.takeovers()

    # the partitions did move: each was taken over by at least two different workers
    owners = {p: {w for w, q, _s, _g in takeovers if q == p} for p in range(chaos.partitions)}
    assert all(len(ws) >= 2 for ws in owners.values()), owners
    assert len(docs) == len(load_zones(DEMO_ZONES)) and reader.entries > len(docs)
    assert set(reader.versions) == set(docs)
    assert reader.problems() == [], "zone versions that did not increase: (zone, previous, next)"
    assert reader.frozen(docs, clock) == [], "zones the wall shows behind Redis or the final clock"
