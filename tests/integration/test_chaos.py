"""The small `make chaos`: kill -9 the worker twice during a replay, and flush Redis during and
after one; the final zone state, output topics and the wall's open incidents equal those of a
clean run of the same events.
(`make chaos` adds 5 kills, a broker restart and a Redis restart on a stack of its own.)"""

from __future__ import annotations

import pytest

from bench.chaos import Chaos, compare, event_set, report_line
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clean_run(stack):
    chaos = Chaos(stack, REPO / ".stack" / "test")
    events = event_set(minutes=3)
    return chaos, events, chaos.clean(events)


def check(name, events, clean, run):
    cmp = compare(clean, run)
    print(report_line(name, len(events), cmp))
    assert cmp["events_counted"] == cmp["events_expected"] > 0
    assert (cmp["lost"], cmp["duplicated"]) == (0, 0)
    assert cmp["docs_equal"]
    assert (cmp["sla_lost"], cmp["sla_extra"]) == (0, 0)
    assert cmp["enriched_equal"] and cmp["zones_state_equal"]
    assert cmp["wall_equal"], "zw:incidents (the wall's open incidents) differs from the clean run"


def test_kill_9_twice_during_a_replay(clean_run):
    chaos, events, clean = clean_run
    check("kill -9 x2", events, clean, chaos.kills(events, 2))


def test_redis_flushed_during_and_after_a_replay(clean_run):
    chaos, events, clean = clean_run
    check("redis flush x2", events, clean, chaos.redis_restart(events, flush=True))
