"""GET /zones?at= without Kafka (gateway/rewind.py): the read (`find`) on a fake zones.state whose
offsets-by-timestamp behave as Kafka's, against a brute-force oracle written here (per zone, the
record with the greatest timestamp at or before TS, the later one among equals); the widening of
its windows (each offset read once, no more windows than needed); its bounds; `parse_at`; and the
answers of `Rewind.zones_at` (400, 404 before the retention, after the clock, before the oldest
record) on the same fake."""

from __future__ import annotations

import asyncio
import calendar
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import Response

from contract import schemas
from contract.errors import RewindRefused
from contract.settings import Settings
from gateway import rest, rewind
from gateway.rewind import Rec, Rewind, find, parse_at
from tests import scenario

S = 1000
AT = 1_700_000_000_000     # 2023-11-14T22:13:20Z


class FakeHistory:
    """A zones.state of a few partitions held in lists. `offsets_at` is Kafka's ListOffsets by
    timestamp: the first offset in offset order whose timestamp is >= ts, else the end offset.
    `read` yields records in batches of `batch` (with an empty batch now and then, as a poll
    that timed out) and counts how often each offset was read."""

    def __init__(self, partitions: dict[int, list[tuple[str, int]]], batch: int = 3):
        # partition -> [(zone id, timestamp)] in offset order
        self.parts = {p: [Rec(p, off, ts, zid.encode(), doc(zid, ts, off)) for off, (zid, ts) in enumerate(recs)]
                      for p, recs in partitions.items()}
        self.batch = batch
        self.reads: dict[tuple[int, int], int] = {}
        self.connected = True

    async def offsets_at(self, ts: int) -> dict[int, int]:
        return {p: next((r.offset for r in recs if r.timestamp >= ts), len(recs)) for p, recs in self.parts.items()}

    async def read(self, ranges):
        for p, (start, stop) in sorted(ranges.items()):
            recs = self.parts[p][start:stop]
            for i in range(0, len(recs), self.batch):
                chunk = recs[i:i + self.batch]
                for r in chunk:
                    self.reads[(p, r.offset)] = self.reads.get((p, r.offset), 0) + 1
                yield chunk
                yield []

    async def oldest(self):
        firsts = [recs[0].timestamp for recs in self.parts.values() if recs]
        return min(firsts) if firsts else None

    async def start(self):
        pass

    async def stop(self):
        pass


def doc(zid: str, ts: int, off: int) -> bytes:
    """A zone document of the contract (the answers are checked against its schema) saying which record it is."""
    return orjson.dumps(schemas.example("zone", zone_id=zid, clock=ts, version=off + 1))   # versions start at 1


def which(body: list) -> list[dict]:
    """The answer's documents as (zone_id, clock, offset)."""
    return [{"zone_id": d["zone_id"], "clock": d["clock"], "offset": d["version"] - 1} for d in body]


def oracle(parts: dict[int, list[tuple[str, int]]], at: int, floor: int) -> dict[str, tuple[int, int, int]]:
    """Brute force: per zone, (timestamp, partition, offset) of its record with the greatest
    timestamp in [floor, at], the later offset among equal timestamps."""
    best: dict[str, tuple[int, int, int]] = {}
    for p, recs in parts.items():
        for off, (zid, ts) in enumerate(recs):
            if floor <= ts <= at and (zid not in best or (ts, off) > (best[zid][0], best[zid][2])):
                best[zid] = (ts, p, off)
    return best


def run(coro):
    return asyncio.run(coro)


# --- the read against the oracle ---------------------------------------------------------------

ZONE_IDS = ["A", "B", "C", "D", "E"]


@st.composite
def histories(draw):
    """Writes of up to five zones, each zone always to the same partition (as Kafka's partitioner
    keeps a key), in stream-time order: a partition's timestamps never go back."""
    n_parts = draw(st.integers(1, 3))
    home = {z: draw(st.integers(0, n_parts - 1)) for z in ZONE_IDS}
    t = AT - draw(st.integers(0, 3_000)) * S
    parts: dict[int, list[tuple[str, int]]] = {p: [] for p in range(n_parts)}
    for _ in range(draw(st.integers(0, 60))):
        t += draw(st.sampled_from([0, 1, 250, 5 * S, 60 * S, 900 * S]))   # bursts, beats and gaps
        z = draw(st.sampled_from(ZONE_IDS))
        parts[home[z]].append((z, t))
    return parts


@settings(max_examples=300, deadline=None)
@given(parts=histories(), back_s=st.integers(-20, 4_000), floor_back_s=st.integers(0, 5_000),
       batch=st.integers(1, 7), on_a_record=st.one_of(st.none(), st.integers(0, 10**6)))
def test_find_gives_each_zone_its_last_record_at_or_before_at(parts, back_s, floor_back_s, batch, on_a_record):
    stamps = sorted(ts for recs in parts.values() for _z, ts in recs)
    # TS anywhere, or exactly on a record's timestamp
    at = stamps[on_a_record % len(stamps)] if on_a_record is not None and stamps else AT - back_s * S
    floor = at - floor_back_s * S
    h = FakeHistory(parts, batch=batch)
    found = run(find(h, at, ZONE_IDS, floor))
    want = oracle(parts, at, floor)
    assert {z: (r.timestamp, r.partition, r.offset) for z, r in found.records.items()} == want
    assert found.complete
    assert found.missing == sorted(set(ZONE_IDS) - set(want))
    # the documents are those records' own
    for z, r in found.records.items():
        assert which([orjson.loads(r.value)]) == [{"zone_id": z, "clock": r.timestamp, "offset": r.offset}]
    # each offset read once, and none older than the last window's start or past at + slack
    assert set(h.reads.values()) <= {1}
    for (p, off) in h.reads:
        ts = h.parts[p][off].timestamp
        assert found.since <= ts <= at + rewind.SLACK_MS, (p, off, ts)


def test_a_zone_written_long_before_widens_the_window_until_it_is_found():
    """B is rewritten every 10 s; A was last written 1,000 s before TS: the windows of 15 s, 60 s,
    240 s and 960 s miss it, the fifth (3,840 s) holds it; nothing older is read."""
    beats = [("B", AT - k * 10 * S) for k in range(600, -1, -1)]
    a_at = AT - 1_000 * S
    recs = sorted([("A", AT - 5_000 * S), ("A", a_at), *beats], key=lambda r: r[1])
    h = FakeHistory({0: recs})
    found = run(find(h, AT, ["A", "B"], AT - 7 * 24 * 3600 * S))
    assert found.windows == 5
    assert found.since == AT - 15 * S * 4 ** 4
    assert found.records["A"].timestamp == a_at and found.records["B"].timestamp == AT
    assert found.complete and found.missing == []
    assert min(recs[off][1] for (_p, off) in h.reads) >= AT - 3_840 * S
    assert (0, recs.index(("A", AT - 5_000 * S))) not in h.reads      # A's older record: never read


def test_zones_all_written_near_at_take_one_window():
    beats = [(z, AT - k * 10 * S + i) for k in range(100, -1, -1) for i, z in enumerate("ABC")]
    h = FakeHistory({0: beats[0::2], 1: beats[1::2]})
    found = run(find(h, AT, ["A", "B", "C"], AT - 86_400 * S))
    assert found.windows == 1 and found.complete
    assert len(h.reads) <= 2 * 3   # 15 s of 10-second beats of three zones (and their slack)


def test_a_zone_never_written_searches_back_to_the_floor_and_is_missing():
    recs = [("A", AT - k * 10 * S) for k in range(50, -1, -1)]
    floor = AT - 400 * S
    found = run(find(FakeHistory({0: recs}), AT, ["A", "Z"], floor))
    assert found.complete and found.missing == ["Z"] and found.since == floor
    assert set(found.records) == {"A"}


def test_records_stamped_after_at_are_not_the_answer_but_a_straggler_within_the_slack_is():
    """Two writers share a partition, one a few seconds behind: B's record stamped TS - 2 s sits
    after A's stamped TS + 5 s. The read goes SLACK_MS past TS and finds it; a straggler behind a
    record stamped later than TS + SLACK_MS is beyond what it reads (docs/ARCHITECTURE.md "Rewind")."""
    slack = rewind.SLACK_MS
    h = FakeHistory({0: [("B", AT - 9 * S), ("A", AT - 1 * S), ("A", AT + 5 * S), ("B", AT - 2 * S),
                         ("A", AT + slack + 1), ("B", AT - 1)]})
    found = run(find(h, AT, ["A", "B"], AT - 3600 * S))
    assert (found.records["A"].timestamp, found.records["B"].timestamp) == (AT - 1 * S, AT - 2 * S)


def test_equal_timestamps_give_the_later_record():
    h = FakeHistory({0: [("A", AT - 5 * S), ("A", AT - S), ("A", AT - S), ("A", AT + S)]})
    found = run(find(h, AT, ["A"], AT - 3600 * S))
    assert found.records["A"].offset == 2


def test_the_byte_bound_and_the_deadline_stop_the_search_and_say_so():
    recs = [("A", AT - 100_000 * S)] + [("B", AT - k * S) for k in range(5_000, -1, -1)]
    whole = run(find(FakeHistory({0: recs}), AT, ["A", "B"], AT - 200_000 * S))
    assert whole.complete and whole.records["A"].timestamp == AT - 100_000 * S
    size = len(recs[0][0]) + len(doc("B", AT, 1000))
    capped = run(find(FakeHistory({0: recs}), AT, ["A", "B"], AT - 200_000 * S, max_bytes=200 * size))
    assert not capped.complete and "A" not in capped.records and capped.missing == ["A"]
    assert capped.records["B"].timestamp == AT
    ticks = iter(range(10**6))
    timed = run(find(FakeHistory({0: recs}), AT, ["A", "B"], AT - 200_000 * S, deadline=30, now=lambda: next(ticks)))
    assert not timed.complete and "A" not in timed.records


# --- parse_at -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "want"), [
    ("1686447000000", 1686447000000),
    ("2023-06-11T09:30:00+08:00", calendar.timegm((2023, 6, 11, 1, 30, 0)) * 1000),
    ("2023-06-11T01:30:00Z", calendar.timegm((2023, 6, 11, 1, 30, 0)) * 1000),
    ("2023-06-11t01:30:00z", calendar.timegm((2023, 6, 11, 1, 30, 0)) * 1000),
    ("2023-06-11T01:30:00.25-02:30", calendar.timegm((2023, 6, 11, 4, 0, 0)) * 1000 + 250),
    ("2023-06-11T01:30:00.123456789Z", calendar.timegm((2023, 6, 11, 1, 30, 0)) * 1000 + 123),
])
def test_parse_at_takes_epoch_ms_and_rfc3339(text, want):
    assert parse_at(text) == want


@pytest.mark.parametrize("text", [
    "", " ", "-1", "+1686447000000", "1686447000000.0", "1.6e12", "0x10", "1_686_447_000_000", "１２３",
    "1" * 16, "946684799999", "2023-06-11T09:30:00", "2023-06-11 09:30:00+08:00", "2023-06-11T09:30:00 08:00",
    "2023-06-11", "2023-06-11T9:30:00Z", "2023-02-30T09:30:00Z", "2023-06-11T24:00:00Z",
    "2023-06-11T09:30:00+8:00", "2023-06-11T09:30:00+24:00", "2023-06-11T09:30:00Z\x00", "now", "null",
])
def test_parse_at_refuses_anything_else(text):
    with pytest.raises(ValueError):
        parse_at(text)


def test_a_plus_sent_as_a_space_is_explained():
    with pytest.raises(ValueError, match="%2B"):
        parse_at("2023-06-11T09:30:00 08:00")


# --- the answers ----------------------------------------------------------------------------------


def request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/zones", "query_string": query.encode(),
                    "headers": []})


async def answer(rw: Rewind, query: str, clock: int) -> Response:
    """What GET /zones?at= answers: the documents, or the refusal as gateway/rest.py `zones` renders it."""
    try:
        return await rw.zones_at(request(query), clock)
    except RewindRefused as refused:
        return rest.error(refused.status, str(refused), refused.headers)


def rewound(history, query: str, clock: int, retention_ms: int = 7 * 86_400 * S):
    s = Settings(zones=scenario.ZONES_FILE, rewind_retention_ms=retention_ms)
    rw = Rewind(s, ["A", "B"], history=history)
    resp = run(answer(rw, query, clock))
    return resp.status_code, orjson.loads(resp.body), resp.headers


def test_answers_the_documents_of_the_moment_with_what_they_hold():
    h = FakeHistory({0: [("A", AT - 30 * S), ("B", AT - 20 * S), ("A", AT - 10 * S), ("B", AT + 10 * S)]})
    status, body, headers = rewound(h, f"at={AT}", AT + 60 * S)
    assert status == 200
    assert which(body) == [{"zone_id": "A", "clock": AT - 10 * S, "offset": 2},
                           {"zone_id": "B", "clock": AT - 20 * S, "offset": 1}]
    assert headers["x-rewind-at"] == str(AT) and headers["x-rewind-missing"] == "0"
    assert headers["x-rewind-complete"] == "true" and headers["cache-control"] == "no-store"
    # the same moment as RFC 3339
    status, body2, _ = rewound(h, "at=2023-11-14T22:13:20Z", AT + 60 * S)
    assert status == 200 and body2 == body


def test_404_after_the_clock_before_the_retention_and_before_the_oldest_record_400_for_a_bad_at():
    h = FakeHistory({0: [("A", AT - 3600 * S), ("B", AT - 3000 * S), ("A", AT)]})
    assert rewound(h, f"at={AT + 1}", AT)[0] == 404                          # after the stream clock
    assert rewound(h, f"at={AT}", AT)[0] == 200                              # the clock itself
    assert rewound(h, f"at={AT - 3600 * S - 1}", AT)[0] == 404               # before the oldest record
    status, body, _ = rewound(h, f"at={AT - 3600 * S}", AT)                  # the oldest record itself
    assert status == 200 and [d["zone_id"] for d in body] == ["A"]
    status, body, _ = rewound(h, f"at={AT - 1800 * S - 1}", AT, retention_ms=1800 * S)
    assert status == 404 and "retention" in body["error"]                    # before the retention
    assert rewound(h, f"at={AT - 1800 * S}", AT, retention_ms=1800 * S)[0] == 200
    assert rewound(FakeHistory({0: []}), f"at={AT}", AT)[0] == 404           # nothing written yet
    for bad in ("at=", "at=yesterday", "at=2023-11-14T22:13:20", f"at={AT}&at={AT}", "at=-5"):
        assert rewound(h, bad, AT)[0] == 400, bad


def test_503_while_kafka_is_not_connected():
    h = FakeHistory({0: [("A", AT)]})
    h.connected = False
    status, body, headers = rewound(h, f"at={AT}", AT)
    assert status == 503 and headers["retry-after"] == str(rewind.RETRY_AFTER_S)


def test_answers_of_settled_moments_are_kept_and_served_again():
    h = FakeHistory({0: [("A", AT - 30 * S), ("B", AT - 20 * S)]})
    s = Settings(zones=scenario.ZONES_FILE)
    rw = Rewind(s, ["A", "B"], history=h)
    first = run(rw.zones_at(request(f"at={AT}"), AT + 60 * S))
    reads = dict(h.reads)
    second = run(rw.zones_at(request(f"at={AT}"), AT + 61 * S))
    assert second.body == first.body and h.reads == reads      # nothing read again
    # a moment within SLACK_MS of the clock may still get records: never kept
    run(rw.zones_at(request(f"at={AT + 55 * S}"), AT + 60 * S))
    assert AT + 55 * S not in rw.cache
    assert math.isfinite(rw.cache_bytes) and rw.cache_bytes == len(first.body)


def test_a_kafka_that_stops_answering_is_a_503_and_frees_the_reader(monkeypatch):
    """offsets by time that never come back (a broker gone mid-request): cut off at twice the read's
    deadline, 503; the next request gets the reader."""
    monkeypatch.setattr(rewind, "READ_DEADLINE_S", 0.2)

    class Hanging(FakeHistory):
        hang = True

        async def offsets_at(self, ts):
            if self.hang:
                await asyncio.Event().wait()
            return await super().offsets_at(ts)

    h = Hanging({0: [("A", AT - 30 * S), ("B", AT - 20 * S)]})
    rw = Rewind(Settings(zones=scenario.ZONES_FILE), ["A", "B"], history=h)

    async def twice():
        first = await answer(rw, f"at={AT}", AT + 60 * S)
        h.hang = False
        return first, await answer(rw, f"at={AT}", AT + 60 * S)

    first, second = run(asyncio.wait_for(twice(), 10))    # without the cut-off: TimeoutError here
    assert first.status_code == 503 and first.headers["retry-after"] == str(rewind.RETRY_AFTER_S)
    assert second.status_code == 200 and [d["zone_id"] for d in orjson.loads(second.body)] == ["A", "B"]


def test_a_record_that_is_not_a_zone_document_of_the_contract_is_left_out_and_counted_missing():
    """zones.state is writable by whoever holds a worker's Kafka credential: its records are checked
    against the zone schema as Redis's documents are (gateway/untrusted.py), a bad one left out."""
    h = FakeHistory({0: [("A", AT - 30 * S), ("B", AT - 20 * S)]})
    a, b = h.parts[0]
    bad_b = schemas.example("zone", zone_id="B", clock=b.timestamp, version=2, level="purple")
    h.parts[0][1] = b._replace(value=orjson.dumps(bad_b))
    status, body, headers = rewound(h, f"at={AT}", AT + 60 * S)
    assert status == 200 and which(body) == [{"zone_id": "A", "clock": AT - 30 * S, "offset": 0}]
    assert headers["x-rewind-missing"] == "1"
    # the same document, valid but spread over lines, is served as one line of JSON
    h.parts[0][1] = b._replace(value=orjson.dumps(schemas.example("zone", zone_id="B", clock=b.timestamp, version=2),
                                                   option=orjson.OPT_INDENT_2))
    status, body, headers = rewound(h, f"at={AT}", AT + 61 * S)
    assert [d["zone_id"] for d in body] == ["A", "B"] and headers["x-rewind-missing"] == "0"
