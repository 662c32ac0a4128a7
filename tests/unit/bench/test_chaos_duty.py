"""bench/chaos.py's comparison of duty.events and the duty documents with the clean run and the
in-process reference (made-up snapshots), and the duty plan `make chaos` loads: in the worker's own
flow (streams/testing.py) its event set decides every kind of duty record."""

from __future__ import annotations

import copy

import pytest

from bench.chaos import (
    CLOSING_UNIT,
    OPENING_UNIT,
    PARTITIONS,
    START_MS,
    chaos_plan,
    compare,
    duty_flipped,
    duty_kinds,
    duty_record,
    event_set,
    opening,
    pinned_partition,
    reference,
)
from contract import topics

T = START_MS
#: the clean run's duty.events, as the worker writes them (CONTRACT §10)
RECORDS = [
    {"type": "phase", "name": "临战", "previous": None, "source": "schedule", "by": None, "ts": T},
    {"type": "post_status", "post_id": "gate-e", "status": "manned", "previous": "off", "required": 2,
     "present": 2, "ts": T},
    {"type": "post_status", "post_id": "gate-e", "status": "understaffed", "previous": "manned", "required": 2,
     "present": 1, "ts": T + 20_000},
    {"type": "checkpoint_visited", "checkpoint_id": "cp-01", "unit_id": "SWEEP-1", "ts": T + 30_000},
    {"type": "checkpoint_overdue", "checkpoint_id": "cp-02", "unit_id": None, "ts": T + 150_001},
]
DOCS = {"post:gate-e": {"post_id": "gate-e", "status": "understaffed", "present": 1, "since": T + 20_000},
        "phase": {"name": "临战", "source": "schedule", "by": None, "since": T, "previous": None}}


def _snap(records=RECORDS, redelivered=(), docs=DOCS) -> dict:
    """A run's snapshot as bench/chaos.py `snapshot` makes it, equal to every other in all but duty."""
    raw = [duty_record(e) for e in [*records, *redelivered]]
    zone = {"today": {"calls": 3, "alerts": 5}, "windows": {}, "response": {}, "units": {"present": 2},
            "open_incidents": 0}
    return {"docs": {"A": zone}, "sla": set(), "sla_redelivered": 0, "enriched": {}, "enriched_redelivered": 0,
            "zones_state": {"A": zone}, "wall": {}, "units": {},
            "duty": set(raw), "duty_redelivered": len(raw) - len(set(raw)), "duty_docs": copy.deepcopy(docs)}


def _ref(records=RECORDS, docs=DOCS) -> dict:
    return {"docs": {"A": _snap()["docs"]["A"]}, "sla": set(), "nearest": {},
            "duty": {duty_record(e) for e in records}, "duty_docs": copy.deepcopy(docs)}


def _changed(i: int, **fields) -> list[dict]:
    out = copy.deepcopy(RECORDS)
    out[i].update(fields)
    return out


def test_the_same_duty_records_and_documents_are_equal_and_a_redelivered_copy_is_no_difference():
    cmp = compare(_snap(), _snap(redelivered=[RECORDS[2]]), _ref())
    assert cmp["ok"], cmp
    assert (cmp["duty_records"], cmp["duty_redelivered"]) == (len(RECORDS), 1)
    assert cmp["duty_lost"] == cmp["duty_extra"] == cmp["duty_retracted"] == cmp["duty_flipped"] == []


@pytest.mark.parametrize("i", range(len(RECORDS)))
def test_a_duty_record_missing_from_a_run_is_lost_and_fails_it(i):
    run = _snap(records=RECORDS[:i] + RECORDS[i + 1:])
    cmp = compare(_snap(), run, _ref())
    assert not cmp["ok"]
    assert cmp["duty_lost"] == [duty_record(RECORDS[i])] and cmp["duty_extra"] == []
    assert cmp["ref_duty_lost"] == [duty_record(RECORDS[i])]


def test_a_post_status_decided_otherwise_than_in_the_clean_run_is_retracted():
    # gate-e went empty at T+20 s in this run, understaffed in the clean run: a retraction
    run = _snap(records=_changed(2, status="empty", present=0))
    cmp = compare(_snap(), run, _ref())
    assert not cmp["ok"]
    assert cmp["duty_retracted"] == [("post_status", "gate-e", None, T + 20_000)]
    assert len(cmp["duty_lost"]) == len(cmp["duty_extra"]) == 1


def test_two_records_of_one_decision_in_a_run_are_a_contradiction_even_when_the_clean_run_has_one():
    # the run sent both: gate-e manned at T (as in the clean run) and empty at T (a re-decision)
    flip = {**RECORDS[1], "status": "empty", "present": 0}
    cmp = compare(_snap(), _snap(records=[*RECORDS, flip]), _ref())
    assert not cmp["ok"]
    assert cmp["duty_extra"] == [duty_record(flip)]
    assert any("gate-e" in line for line in cmp["duty_flipped"])


def test_a_post_status_chain_with_a_gap_is_a_contradiction():
    # a run whose clean run is just as broken: only the chain check sees that gate-e's understaffed
    # record says it was manned when no manned record exists
    broken = [r for k, r in enumerate(RECORDS) if k != 1]
    cmp = compare(_snap(records=broken), _snap(records=broken))
    assert not cmp["ok"]
    assert cmp["duty_flipped"] == [f"gate-e at {T + 20_000}: previous 'manned', the record before says 'off'"]


def test_a_phase_record_retracted_or_with_another_operator_fails():
    cmp = compare(_snap(), _snap(records=_changed(0, source="operator", by="王")), _ref())
    assert not cmp["ok"] and cmp["duty_retracted"] == [("phase", "phase", None, T)]


def test_the_duty_documents_in_redis_differ_when_a_post_or_the_phase_differs():
    for docs in ({**DOCS, "post:gate-e": {**DOCS["post:gate-e"], "present": 2}},
                 {k: v for k, v in DOCS.items() if k != "phase"}):
        cmp = compare(_snap(), _snap(docs=docs), _ref())
        assert not cmp["ok"] and not cmp["duty_docs_equal"] and not cmp["ref_duty_docs_equal"]
        assert cmp["duty_docs_difference"]


def test_a_run_equal_to_a_clean_run_that_differs_from_the_reference_fails():
    cmp = compare(_snap(), _snap(), _ref(records=RECORDS[:-1]))
    assert not cmp["ok"] and cmp["ref_duty_extra"] == [duty_record(RECORDS[-1])] and cmp["ref_duty_lost"] == []


def test_the_chaos_event_set_with_the_plan_decides_every_kind_of_duty_record(tmp_path):
    """What `make chaos` compares is there to compare: the reference (the worker's flow in-process)
    decides post statuses of every kind, checkpoint visits and overdues, the schedule's and the
    operator's phases, without contradictions; the operator's commands and an opening fix per
    patrol.gps partition come first, a closing fix per partition at the last instant."""
    plan = tmp_path / "plan.toml"
    plan.write_text(chaos_plan(START_MS), encoding="utf-8")
    events = event_set(minutes=10, plan=True)
    assert [t for t, _ev in events[:2]] == [topics.PLAN_COMMANDS] * 2
    assert [ev["name"] for _t, ev in events[:2]] == ["决战", None]
    assert opening(events) == 2 + PARTITIONS and opening(event_set(minutes=1)) == 0
    first = min(ev["ts"] for _t, ev in events[opening(events):])
    last = max(ev["ts"] for _t, ev in events)

    def pinned(prefix):
        return [(pinned_partition(t, ev), ev["ts"]) for t, ev in events if str(ev.get("unit_id")).startswith(prefix)]
    assert pinned(OPENING_UNIT) == [(p, first - 1000) for p in range(PARTITIONS)]
    assert pinned(CLOSING_UNIT) == [(p, last) for p in range(PARTITIONS)]
    ref = reference(events, plan=plan)
    kinds = {}
    for r in ref["duty"]:
        e = dict(r)
        kinds.setdefault(e["status"] if e["type"] == "post_status" else e["type"], []).append(e)
    assert {k: len(v) >= 5 for k, v in kinds.items() if k != "off"} == {
        "manned": True, "understaffed": True, "empty": True, "checkpoint_visited": True,
        "checkpoint_overdue": True, "phase": True}, duty_kinds(ref["duty"])
    assert {(e["name"], e["source"]) for e in kinds["phase"]} >= {("决战", "operator"), ("决战", "schedule"),
                                                                  ("收尾", "schedule")}
    assert duty_flipped(ref["duty"]) == []
