"""Coverage's kept shares (streams/coverage.py `ZoneCoverage.doc`): whatever the fixes, their order
and the clocks documents are asked at, every answer equals a brute-force count written here from the
cells' latest fix times, at the same instant."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.response import COVERAGE_WINDOWS_MS
from contract.zones import load_zones
from streams import coverage
from streams.coverage import ZoneCoverage, coverage_cells
from tests import scenario

ZONES = load_zones(scenario.ZONES_FILE)
CELLS = {z.zone_id: coverage_cells(z).tolist() for z in ZONES}
ALL_CELLS = sorted({c for cells in CELLS.values() for c in cells})
HOUR = 3_600_000
T0 = 1_700_000_000_000


def oracle(latest: dict[int, int], zone_id: str, clock: int) -> tuple[dict[str, float], int]:
    """The shares at `clock` counted cell by cell, and the first clock at which one changes by time."""
    shares, until = {}, 2**62
    for name, window in COVERAGE_WINDOWS_MS:
        counted = [latest[c] for c in CELLS[zone_id] if c in latest and latest[c] >= clock - window]
        shares[name] = round(len(counted) / len(CELLS[zone_id]), 2)
        for ts in counted:
            until = min(until, ts + window + 1)
    return shares, until


# a step: a fix (cell index, ts offset) judged at the clock, or a document of a zone asked at the
# clock (a fix's ts now and then exactly on a window's edge); the clock moves on by the step's
# advance (mostly forward; now and then a document is asked at an earlier clock, as a daily record's
# figures are)
STEP = st.tuples(st.sampled_from(["fix", "doc", "doc_before"]), st.integers(0, len(ALL_CELLS) - 1),
                 st.one_of(st.integers(-9 * HOUR, 0), st.sampled_from([-HOUR, -HOUR - 1, -8 * HOUR, -8 * HOUR - 1])),
                 st.sampled_from([0, 1, 1000, 59 * 60_000, HOUR, HOUR + 1, 8 * HOUR]))


@pytest.mark.parametrize("small", [0, 16, 64])
@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=80))
def test_every_document_equals_a_count_of_the_cells_at_its_clock(small, steps):
    """`small`: coverage.SMALL_ZONE_SLOTS, so that every zone's shares (0), those of the zones of 1
    and 4 cells (16: the others' by numpy) or all (64) are computed in Python."""
    kept, coverage.SMALL_ZONE_SLOTS = coverage.SMALL_ZONE_SLOTS, small
    try:
        cov = ZoneCoverage(ZONES)
    finally:
        coverage.SMALL_ZONE_SLOTS = kept
    assert sorted(len(v) for v in CELLS.values()) == [1, 4, 17, 48, 49]   # the split `small` means
    assert len(cov.small_slots) == {0: 0, 16: 2, 64: 5}[small]
    latest: dict[int, int] = {}
    clock = T0
    for kind, i, back, advance in steps:
        clock += advance
        cell = ALL_CELLS[i]
        if kind == "fix":
            ts = clock + back
            cov.fix(cell, ts, clock)
            latest[cell] = max(latest.get(cell, ts), ts)
            continue
        at = clock if kind == "doc" else clock + back
        for z in ZONES:   # every zone, so the kept shares of zones the fix did not touch are read too
            assert cov.doc(z.zone_id, at) == oracle(latest, z.zone_id, at), (z.zone_id, at - T0)


def test_a_fix_that_brings_a_cell_into_the_window_changes_a_kept_share():
    cov = ZoneCoverage(ZONES)
    zone = ZONES[0].zone_id
    first, second = CELLS[zone][0], CELLS[zone][-1]
    cov.fix(first, T0, T0)
    before = cov.doc(zone, T0)
    cov.fix(second, T0, T0)
    after = cov.doc(zone, T0)
    assert before == oracle({first: T0}, zone, T0) and after == oracle({first: T0, second: T0}, zone, T0)
    assert len(CELLS[zone]) == 1 or before != after


def test_a_document_asked_before_the_clock_a_fix_was_judged_at_counts_that_fix():
    """A cell counted for 8 h but not 60 min; a fix judged two hours on, 30 min after the kept shares,
    is outside 60 min then (nothing to change at that clock) but inside it an hour on from them."""
    cov = ZoneCoverage(ZONES)
    zone = ZONES[0].zone_id
    cell = CELLS[zone][0]
    cov.fix(cell, T0 - 2 * HOUR, T0)
    assert cov.doc(zone, T0) == oracle({cell: T0 - 2 * HOUR}, zone, T0)
    cov.fix(cell, T0 + HOUR // 2, T0 + 2 * HOUR)
    assert cov.doc(zone, T0 + HOUR) == oracle({cell: T0 + HOUR // 2}, zone, T0 + HOUR)
