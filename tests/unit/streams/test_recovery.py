"""A takeover (streams/recovery.py) at any point of the stream changes no output: a partition
state rebuilt from its last snapshot, the look-back below it and the log's tail after it decides
what the state that was never interrupted decides — zone documents, sla.events, dispatch
recommendations, unit presence (and with them contract v3's units.by_force, coverage, on-scene tiers
and health.last_event_ts, in the documents and sla.events). Driven through the real pieces
in-process (streams/testing.py's Pipeline, StateStage.snapshot, recovery's from_snapshot /
rebuild_from / rebuilt), only the transport replaced by in-memory logs; the outputs are compared
with the same read order run without takeovers and with the brute-force oracles of test_read_order.
A snapshot written by the code before contract v3 restores (the last test)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import msgspec
import orjson
import pytest

from contract.settings import Settings
from streams import recovery
from streams.testing import Pipeline
from tests import scenario
from tests.unit.streams.test_pipeline import messages

from .test_read_order import (
    canon,
    dispatch_events,
    events,
    oracle_nearest,
    oracle_sla,
    read_order,
    recommendations,
)


class LoggedPipeline(Pipeline):
    """A Pipeline whose partitions keep their zone-events log and a compacted snapshots topic (key ->
    latest value), snapshotting at random after a message, and can be taken over."""

    def __init__(self, settings: Settings, rng: random.Random, snapshot_p: float):
        super().__init__(settings, keep_log=True)
        self.rng = rng
        self.snapshot_p = snapshot_p
        self.topic: dict[int, dict[bytes, bytes | None]] = {p: {} for p in range(settings.partitions)}
        self.takeovers = 0

    def applied(self, p: int, value: bytes) -> None:
        super().applied(p, value)
        if self.rng.random() < self.snapshot_p:
            self.topic[p].update(self.stage.snapshot(p))

    def take_over(self, p: int) -> None:
        """What a worker taking partition p does (recovery.restore), from the in-memory topics."""
        assert self.log is not None
        snap, sealed = recovery.parse_snapshot(p, self.topic[p])
        old = self.stage.held[p]
        held, start, lookback = recovery.from_snapshot(self.stage, p, snap, sealed, first=0)
        log = self.log[p]
        for offset in range(lookback, len(log)):
            recovery.rebuild_from(self.stage, held, offset, log[offset], start, count_from=len(log))
        versions = {zid: agg.version for zid, agg in old.state.zones.items()}
        recovery.rebuilt(held, len(log), start, versions, old.generation + 1)
        self.stage.held[p] = held
        self.takeovers += 1


def run(msgs, partitions: int, batch: int, takeover_p: float, seed: int):
    s = Settings(zones=scenario.ZONES_FILE, partitions=partitions, future_tolerance_ms=10 ** 13)
    rng = random.Random(seed)
    pipe = LoggedPipeline(s, rng, snapshot_p=0.3)
    for i in range(0, len(msgs), batch):
        pipe.feed(msgs[i:i + batch], batch=batch)
        for p in range(partitions):
            if rng.random() < takeover_p:
                pipe.take_over(p)
    pipe.finish()
    docs = {z: {k: v for k, v in d.items() if k != "version"} for z, d in pipe.documents().items()}
    # at-least-once: a takeover sends again what its tail replay decides (consumers dedupe)
    sla = {canon(e) for e in pipe.sla}
    return docs, sla, recommendations(pipe), pipe.presence(), pipe.takeovers


@pytest.mark.parametrize("seed", range(3))
def test_a_takeover_anywhere_changes_no_output(seed):
    calls, fixes, alerts = events(seed)
    final_clock = max(e["ts"] for e in calls + fixes + alerts)
    want_sla = set(oracle_sla(calls, fixes, final_clock))
    want_nearest = oracle_nearest(calls, fixes)
    for partitions in (1, 4):
        msgs = read_order(calls, fixes, alerts, seed * 10 + partitions)
        batch = random.Random(seed).randint(2, 10)
        base = run(msgs, partitions, batch, takeover_p=0.0, seed=seed)
        assert base[4] == 0
        got = run(msgs, partitions, batch, takeover_p=0.3, seed=seed)
        assert got[4] >= 5, "the run must take partitions over"
        assert got[1] == base[1] == want_sla, (partitions, got[1] ^ want_sla)
        assert got[2] == base[2] == want_nearest, partitions
        assert got[3] == base[3], partitions
        assert got[0] == base[0], (partitions, [z for z in base[0] if got[0].get(z) != base[0][z]][:3])


@pytest.mark.parametrize("seed", range(3))
def test_recommendations_survive_takeovers(seed):
    calls, fixes = dispatch_events(seed)
    want = oracle_nearest(calls, fixes)
    msgs = read_order(calls, fixes, [], seed * 10 + 7)
    _docs, _sla, nearest, _presence, n = run(msgs, 4, random.Random(seed).randint(5, 40), takeover_p=0.2,
                                             seed=seed)
    assert n >= 5
    assert nearest == want, {c: (nearest.get(c), want[c]) for c in want if nearest.get(c) != want[c]}


def _held(by_minute: dict, keep_from: int) -> Counter:
    """The held fixes (minute -> cell or unit -> [fix]) from keep_from on, as a multiset."""
    return Counter(f for by_key in by_minute.values() for lst in by_key.values() for f in lst if f[0] >= keep_from)


def test_the_rebuilt_look_back_is_the_live_one():
    """The look-back memory after a takeover (held fixes by cell and by unit, held alerts, the
    per-unit fix memory) equals the uninterrupted state's, restricted to what it still holds."""
    calls, fixes, alerts = events(5)
    msgs = read_order(calls, fixes, alerts, 55)
    s = Settings(zones=scenario.ZONES_FILE, partitions=3, future_tolerance_ms=10 ** 13)
    pipe = LoggedPipeline(s, random.Random(1), snapshot_p=0.2)
    pipe.feed(msgs[: len(msgs) * 2 // 3], batch=17)
    held = []
    for p in range(3):
        live = pipe.stage.held[p].state
        pipe.take_over(p)
        new = pipe.stage.held[p].state
        keep = new.incidents.keep_from
        assert _held(new.incidents.fixes, keep) == _held(live.incidents.fixes, keep), p
        held.append(sum(_held(new.incidents.fixes, keep).values()))
        assert _held(new.incidents.fixes_by_unit, keep) == _held(live.incidents.fixes_by_unit, keep), p
        assert new.incidents.seen_alerts <= live.incidents.seen_alerts
        for unit, seen in new.seen_fix.items():
            assert seen <= live.seen_fix.get(unit, set()), unit
    # home cells go to partitions by longitude (streams/partitioning.py): these zones are two runs
    # wide, so the third partition may hold no fix; the other two must, for the comparison to count
    assert sorted(held)[-2] > 20, held


# --- a snapshot of the code before contract v3 ----------------------------------------------------

V2_SNAPSHOTS = Path(__file__).resolve().parents[2] / "golden" / "snapshots_v2.msgpack"


def test_a_snapshot_written_before_contract_v3_restores():
    """tests/golden/snapshots_v2.msgpack: the snapshots topic and zone documents of the worker before
    contract v3 (commit d7cc733, made by tests/golden/snapshots_v2_gen.py) after the scenario's calls,
    alerts and first four fixes, 2 partitions. The new code takes both partitions over from it: the
    documents carry v2's figures unchanged and v3's fields from what the snapshot holds (units without
    a force are police; last_event_ts from the same largest ts the age was computed from; reach's
    pairs computed again with within_1m); the scenario's last two fixes then give the hand-computed
    documents but for two documented losses (docs/DESIGN.md "Forces, coverage and on-scene tiers"):
    coverage starts empty, so only u2's fix at PA2 (00:21:50) counts — A 1/48 = 0.02, the others 0 — and the
    calls whose tiers deadline the old worker had passed (c1, c2, c3, c6, c7) get no tiers record."""
    fixture = msgspec.msgpack.decode(V2_SNAPSHOTS.read_bytes())
    pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=fixture["partitions"]))
    for p in range(fixture["partitions"]):
        latest = {k.encode(): v for k, v in fixture["snapshots"][str(p)].items()}
        snap, sealed = recovery.parse_snapshot(p, latest)
        assert snap is not None and "coverage" not in snap["state"]   # really the old format
        held, start, _lookback = recovery.from_snapshot(pipe.stage, p, snap, sealed, first=0)
        recovery.rebuilt(held, start, start, {}, generation=2)
        pipe.stage.held[p] = held
    old = orjson.loads(fixture["documents"])
    new = pipe.documents()
    assert set(new) == set(old)
    for zid, d in new.items():
        o = old[zid]
        same = ("today", "windows", "open_incidents", "level", "clock")
        assert {k: d[k] for k in same} == {k: o[k] for k in same}, zid
        assert {k: v for k, v in d["response"].items() if not k.startswith("tiers_")} == o["response"], zid
        assert d["units"] == {**o["units"], "by_force": {"police": o["units"]["present"], "auxiliary": 0,
                                                         "volunteer": 0, "security": 0}}, zid
        h = d["health"]
        for src, age in o["health"].pop("last_event_age_s").items():
            last = h["last_event_ts"][src]
            assert (age, last) == (None, None) or (d["clock"] - last) // 1000 == age, (zid, src)
        assert {k: v for k, v in h.items() if k != "last_event_ts"} == o["health"], zid
        assert d["coverage"] == {"60m": 0.0, "8h": 0.0}, zid   # the old snapshot has none
        # u2 at PCORE is the one available present unit, as at the scenario's end (tests/scenario.py)
        assert d["reach"] == {"within_1m": scenario.REACH[zid]["within_1m"], **o["reach"]}, zid
    assert any(d["units"]["present"] for d in new.values())
    # the rest of the scenario, on the new code
    pipe.feed(messages()[fixture["n_messages"]:], batch=3)
    pipe.finish()
    final = {z: scenario.strip_volatile(d) for z, d in pipe.documents().items()}
    coverage = {"A": 0.02, "B": 0.0, "outer": 0.0, "inner": 0.0, "core": 0.0}
    want = {z: {**d, "response": {**d["response"], "tiers_decided": 0},
                "coverage": {"60m": coverage[z], "8h": coverage[z]}} for z, d in scenario.EXPECTED.items()}
    assert final == want
    assert [e for e in pipe.sla if e["type"] == "tiers"] == []
