"""The wall's incident list as IncidentState reports it (take_board / board_doc), driven directly."""

from __future__ import annotations

from h3.api import basic_int as h3
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.response import BREACH_AFTER_MS, DISPATCH_EXACT_M, EXPIRE_AFTER_MS
from streams.incidents import IncidentState
from streams.partitioning import FINE_RES

LAT, LON = 34.7466, 113.6253          # the call location
FAR = (34.80, 113.70)                  # ~7 km away: never an arrival
T0 = 1_700_000_000_000


def cell(lat, lon):
    return h3.latlng_to_cell(lat, lon, FINE_RES)


def call(state: IncidentState, cid: str, ts: int, prio: int = 1) -> None:
    rec = {"call_id": cid, "ts": ts, "lat": LAT, "lon": LON, "category": "violent", "priority": prio,
           "caller_ref": "0123456789abcdef", "zones": ["A"], "ring": None, "nearest_units": [],
           "corroborating_alerts": []}
    state.on_call(cid, ts, LAT, LON, cell(LAT, LON), ["A"], rec)


def fix(state: IncidentState, unit: str, ts: int, where=(LAT, LON)) -> None:
    state.on_fix(unit, ts, where[0], where[1], cell(*where))


def board(state: IncidentState) -> dict[str, dict]:
    return {cid: state.board_doc(inc, 3) for cid, inc in state.take_board().items()}


def test_open_then_arrived_with_its_response():
    s = IncidentState()
    s.advance_clock(T0)
    call(s, "c1", T0)
    doc = board(s)["c1"]
    assert doc["status"] == "open" and doc["ts"] == T0 and doc["breach_at"] == T0 + BREACH_AFTER_MS
    assert doc["priority"] == 1 and doc["category"] == "violent" and doc["zones"] == ["A"]
    assert doc["partition"] == 3 and doc["arrived_ts"] is None and doc["response_s"] is None
    assert "caller" not in doc and "caller_ref" not in doc     # the wall needs no caller at all
    assert board(s) == {}                                       # nothing changed since
    fix(s, "u1", T0 + 95_000)
    assert board(s) == {}          # a candidate only, until the watermark passes the fix (§3)
    s.advance_clock(T0 + 95_000)
    doc = board(s)["c1"]
    assert doc["status"] == "arrived" and doc["unit_id"] == "u1" and doc["response_s"] == 95.0
    assert s.open_incidents() == []


def test_breach_then_late_arrival_then_nothing_at_expiry():
    s = IncidentState()
    s.advance_clock(T0 - 1)
    call(s, "c1", T0)
    board(s)
    s.advance_clock(T0)
    # the watermark reached the call: its recommendation is decided (no unit near: the worker
    # completes it from Redis, then touches it), the entry rewritten with it
    assert s.incidents["c1"].recommended_at == T0 and s.take_fallback() == {"c1": DISPATCH_EXACT_M}
    assert board(s) == {}
    s.touch("c1")
    assert board(s)["c1"]["status"] == "open"
    fix(s, "far", T0 + BREACH_AFTER_MS - 1, FAR)
    s.advance_clock(T0 + BREACH_AFTER_MS - 1)
    assert board(s) == {}
    s.advance_clock(T0 + BREACH_AFTER_MS)
    assert board(s)["c1"]["status"] == "breached"
    assert [i.call_id for i in s.open_incidents()] == ["c1"]
    fix(s, "u2", T0 + 400_000)
    s.advance_clock(T0 + 400_000)
    assert board(s)["c1"]["status"] == "arrived"
    s.advance_clock(T0 + EXPIRE_AFTER_MS + 1)
    assert board(s) == {}          # it left the wall at its arrival already


def test_unanswered_incident_expires_from_the_wall():
    s = IncidentState()
    s.advance_clock(T0)
    call(s, "c1", T0)
    assert board(s)["c1"]["status"] == "open"
    s.advance_clock(T0 + EXPIRE_AFTER_MS - 1)
    assert board(s)["c1"]["status"] == "breached"
    s.advance_clock(T0 + EXPIRE_AFTER_MS)
    assert board(s)["c1"]["status"] == "expired"
    assert s.open_incidents() == []


def test_fix_consumed_before_its_call_means_never_open():
    s = IncidentState()
    s.advance_clock(T0 + 60_000)
    fix(s, "u1", T0 + 30_000)
    call(s, "c1", T0)
    doc = board(s)["c1"]
    assert doc["status"] == "arrived" and doc["response_s"] == 30.0


def test_touch_re_renders_an_open_incident_only():
    s = IncidentState()
    s.advance_clock(T0)
    call(s, "c1", T0)
    call(s, "c2", T0 + 1000)
    fix(s, "u1", T0 + 500)         # c1 arrived, c2 (later) still open
    s.advance_clock(T0 + 1000)
    board(s)
    s.incidents["c2"].record["nearest_units"] = [{"unit_id": "u9", "kind": "car", "distance_m": 800.0, "eta_s": 125}]
    s.touch("c1")
    s.touch("c2")
    s.touch("unknown")
    out = board(s)
    assert set(out) == {"c2"} and out["c2"]["nearest_units"][0]["unit_id"] == "u9"


STEP = st.one_of(
    st.tuples(st.just("call"), st.integers(0, 9), st.integers(0, 400)),
    st.tuples(st.just("fix_here"), st.integers(0, 9), st.integers(0, 400)),
    st.tuples(st.just("fix_far"), st.integers(0, 9), st.integers(0, 400)),
    st.tuples(st.just("clock"), st.integers(0, 9), st.sampled_from([0, 30, 100, 299, 301, 1800, 3600, 4000])),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(STEP, max_size=60), st.integers(1, 8))
def test_a_client_applying_board_entries_holds_exactly_the_open_incidents(steps, flush_every):
    """What the wall does (upsert open/breached, drop the rest) after any sequence of calls, fixes
    and clock moves, flushed at any points, equals open_incidents() — with the right status."""
    s = IncidentState()
    clock = T0
    s.advance_clock(clock)
    wall: dict[str, str] = {}

    def flush():
        for cid, doc in board(s).items():
            if doc["status"] in ("open", "breached"):
                wall[cid] = doc["status"]
            else:
                wall.pop(cid, None)

    for n, (what, k, dt_s) in enumerate(steps, 1):
        ts = clock - 200_000 + dt_s * 1000        # late and early events alike
        if what == "call":
            call(s, f"c{k}", ts)
        elif what == "fix_here":
            fix(s, f"u{k}", ts)
        elif what == "fix_far":
            fix(s, f"u{k}", ts, FAR)
        else:
            clock += dt_s * 1000
            s.advance_clock(clock)
        if n % flush_every == 0:
            flush()
    flush()
    expected = {i.call_id: ("breached" if i.breached else "open") for i in s.open_incidents()}
    assert wall == expected


def test_timeline_carries_the_cameras_and_the_units_where_they_were_at_the_call():
    """The wall's incident map: each corroborating alert at its camera, each recommended unit at its
    fix at or before the call's ts (not where it went afterwards); both survive a snapshot, and the
    document is valid against the published schema."""
    from jsonschema import Draft202012Validator

    from contract import schemas

    north = lambda m: (LAT + m / 111_320, LON)  # noqa: E731  (m metres north of the call)
    s = IncidentState()
    s.advance_clock(T0 - 120_000, T0 - 120_000)
    s.on_fix("u1", T0 - 30_000, *north(500), cell(*north(500)), True, "car")
    s.on_fix("u1", T0 + 60_000, *north(1500), cell(*north(1500)), True, "car")   # after the call: not it
    s.on_fix("u2", T0 - 10_000, *north(-800), cell(*north(-800)), True, "foot")
    s.on_fix("u3", T0 - 5_000, *north(100), cell(*north(100)), False, "car")      # busy: not recommended
    s.on_alert("a1", T0 - 100_000, "fight", *north(200), cell(*north(200)))
    call(s, "c1", T0)
    s.on_alert("a2", T0 + 20_000, "crowd_density", *north(-250), cell(*north(-250)))
    s.advance_clock(T0 + 60_000, T0 + 60_000)   # the watermark passes the call: recommended
    s.take_output()
    assert set(s.take_fallback()) == {"c1"}     # fewer than 3 found: Redis would add farther units
    s.touch("c1")                               # (none here), then the timeline shows the list
    doc = s.timeline_doc(s.incidents["c1"], 2)
    units = {u["unit_id"]: (u["lat"], u["lon"], u["ts"]) for u in doc["nearest_units"]}
    assert units == {"u1": (*north(500), T0 - 30_000), "u2": (*north(-800), T0 - 10_000)}
    assert {a["alert_id"]: (a["lat"], a["lon"]) for a in doc["corroborating_alerts"]} == \
        {"a1": north(200), "a2": north(-250)}
    # the enriched record (incidents.enriched, contract §4) stays as it was: no positions there
    rec = s.incidents["c1"].record
    assert all("lat" not in u for u in rec["nearest_units"])
    assert all("lat" not in a for a in rec["corroborating_alerts"])
    restored = IncidentState.restore(s.snapshot())
    assert restored.timeline_doc(restored.incidents["c1"], 2) == doc
    v = Draft202012Validator(schemas.schema("incident-timeline"))
    assert [e.message for e in v.iter_errors(doc)] == []
