"""The hostile corpus of tests/hostile.py: its labels agree with the validator, and the ingest
router and the zone state survive it in-process (the same corpus runs through Kafka in
tests/integration/test_hostile_input.py)."""

from __future__ import annotations

import base64
import hashlib
import time
from collections import Counter, namedtuple

import orjson
import pytest

from contract import events, topics
from contract.errors import Rejected
from contract.events import decode_and_validate, redact_callers
from contract.settings import Settings
from contract.zones import load_zones
from streams import metrics, records
from streams.routing import Router
from streams.state_stage import StateStage
from streams.zone_index import ZoneIndex
from tests import hostile

Rec = namedtuple("Rec", "topic partition offset key value timestamp")
MAX_TS = int(time.time() * 1000) + 5 * 60_000


@pytest.fixture(scope="module")
def corpus():
    return hostile.corpus()


def _digest(msgs) -> str:
    h = hashlib.sha256()
    for m in msgs:
        h.update(repr((m.topic, m.key, m.cls, m.expect, m.reason, m.norm, m.zones)).encode())
        h.update(m.value or b"<null>")
    return h.hexdigest()


def test_corpus_is_deterministic_and_covers_every_class(corpus):
    # the corpus covers the first three inputs; camera.status has tests/unit/contract/test_status.py
    assert (hostile.CALLS, hostile.GPS, hostile.ALERTS) == topics.INPUT_TOPICS[:3]
    assert _digest(hostile.corpus()) == _digest(corpus)
    bad = [m for m in corpus if m.expect == "rejected"]
    assert len(bad) >= 10_000
    by_cls_topic = Counter((m.cls, m.topic) for m in bad)
    for cls in hostile.BAD_MIX:
        assert {t for c, t in by_cls_topic if c == cls} == set(hostile.TOPICS), cls
    assert sum(1 for m in bad if m.value is not None and len(m.value) >= hostile.BIG) == 3
    assert Counter(m.expect for m in corpus)["accepted"] == 2000 + 600  # + the burst of maximal calls
    keys = Counter("null" if m.key is None else "empty" if m.key == b"" else "other" for m in corpus)
    assert keys["null"] > 100 and keys["empty"] > 100


def test_every_label_matches_the_validator(corpus):
    wrong = []
    for i, m in enumerate(corpus):
        try:
            ev = decode_and_validate(m.topic, m.value, MAX_TS)
        except Rejected as exc:
            if m.expect != "rejected" or m.reason not in exc.reason:
                wrong.append((i, m.cls, m.expect, m.reason, exc.reason, (m.value or b"")[:120]))
        else:
            if m.expect == "rejected" or ev != m.norm:
                wrong.append((i, m.cls, m.expect, m.reason, ev, (m.value or b"")[:120]))
    assert not wrong, f"{len(wrong)} labels disagree, first ones: {wrong[:5]}"


def test_valid_events_are_unique_in_the_zones_they_claim_and_duplicates_follow_them(corpus):
    index = ZoneIndex(load_zones(hostile.ZONES_FILE))
    seen = set()
    for m in corpus:
        if m.expect == "rejected":
            continue
        assert tuple(sorted(index.lookup(m.norm["lat"], m.norm["lon"]))) == m.zones, m.norm
        if m.expect == "accepted":
            assert m.ident not in seen, m.ident
            seen.add(m.ident)
        else:
            assert m.ident in seen, m.ident  # a duplicate comes after its original
    assert max(m.norm["ts"] for m in corpus if m.norm) == hostile.FINAL_CLOCK
    today = hostile.expected_today(corpus)
    assert sum(t["calls"] + t["alerts"] for t in today.values()) > 200


def test_router_and_zone_state_survive_the_corpus_in_process(corpus):
    """Router -> dead letters / zone-events -> partition states, as the worker wires them."""
    s = Settings(zones=hostile.ZONES_FILE, partitions=4, caller_secret="test-secret")
    zones = load_zones(s.zones)
    router = Router(s, ZoneIndex(zones))
    stage = StateStage(s, zones, _NoWriter())
    states = {p: stage.new_state(p) for p in range(s.partitions)}
    before = _counts()
    dead = []

    def deliver(out, clock):
        feedback = {}
        for p, recs in out.items():
            stage.apply_batch(states[p], records.encode(clock, recs))
            for q, arr in stage.take_outputs(states[p])[2].items():
                feedback.setdefault(q, []).extend(arr)
        if feedback:
            deliver(feedback, clock)

    recs = [Rec(m.topic, 0, i, m.key, m.value, 1) for i, m in enumerate(corpus)]
    for i in range(0, len(recs), 1000):
        out, d, _rejected, _positions = router.route(recs[i:i + 1000])
        dead.extend(d)
        deliver(out, router.clock)
    for m, reason in dead:  # the dead-letter records the worker would publish
        raw = redact_callers(m.value, router.secret) if m.value else m.value
        rec = orjson.loads(events.deadletter_record(m.topic, m.partition, m.offset, reason, raw))
        assert rec["reason"] and len(rec["raw"]) <= events.DEADLETTER_RAW_LIMIT * 4 // 3 + 4
        text = base64.b64decode(rec["raw"]) if rec["raw_encoding"] == "base64" else rec["raw"].encode()
        assert b"13800138000" not in text  # caller numbers never leave in clear (CONTRACT §6)
    assert sorted(m.offset for m, _r in dead) == [i for i, m in enumerate(corpus) if m.expect == "rejected"]
    after = _counts()
    got = {k: after[k] - before[k] for k in after}
    want = hostile.expected_counts(corpus)
    assert {k: v for k, v in got.items() if k[1] != "rejected" and v} == \
        {k: v for k, v in want.items() if k[1] != "rejected" and v}
    docs = {}
    for st in states.values():
        for doc in st.changed_documents(all_zones=True):
            docs[doc["zone_id"]] = doc
    assert {z: d["today"] for z, d in docs.items()} == hostile.expected_today(corpus)
    assert {d["clock"] for d in docs.values()} == {hostile.FINAL_CLOCK}


class _NoWriter:
    async def current_versions(self, zone_ids):
        return {}


def _counts() -> dict:
    out = {}
    for src in ("calls", "gps", "alerts"):
        for outcome in ("accepted", "duplicate", "rejected"):
            out[(src, outcome)] = metrics.EVENTS.labels(src, outcome)._value.get()
    return out


# --- regressions in ingest (each found by the corpus) -----------------------------------------
def test_dead_letters_redact_callers_of_any_type_and_spelling():
    from contract.events import caller_ref

    ref = caller_ref("13800138000", b"s").encode()
    for raw in (b'{"caller":"13800138000","x":1}', b'{"caller": 13800138000, "x":1}',  # a number leaked
                b'{"caller":["13800138000"]}', b'{"caller":{"n":{"m":"13800138000"}}}',
                b'{"call\\u0065r":"13800138000"}', b'{"\\u0063\\u0061\\u006C\\u006cer": 13800138000',
                b'{"caller":"13800138000', b'{"caller" : +13800138000}', b'{"caller": \'13800138000\'}'):
        out = redact_callers(raw, b"s")
        assert b"13800138000" not in out, (raw, out)
        assert b'"caller_ref":"' in out
    assert redact_callers(b'{"caller": 13800138000, "x":1}', b"s") == b'{"caller_ref":"' + ref + b'", "x":1}'
    assert redact_callers(b'{"caller": 13800138000}', b"") == b'{"caller_ref":null}'
    assert redact_callers(b'{"text":"caller"}', b"s") == b'{"text":"caller"}'


def test_dead_letter_key_is_the_original_or_null_when_too_large():
    from contract.events import deadletter_key

    assert deadletter_key(None) is None and deadletter_key(b"") == b""
    assert deadletter_key(b"k" * events.DEADLETTER_RAW_LIMIT) == b"k" * events.DEADLETTER_RAW_LIMIT
    # a 1.5 MB key made the broker refuse the dead letter, which stopped ingest
    assert deadletter_key(b"k" * (events.DEADLETTER_RAW_LIMIT + 1)) is None


def test_input_topics_take_values_of_several_megabytes():
    from contract.kafka_settings import topic_specs

    specs = {t.name: t for t in topic_specs(Settings(), 4)}
    for topic in topics.INPUT_TOPICS:
        assert int(specs[topic].topic_configs["max.message.bytes"]) >= hostile.BIG + (1 << 20)


def test_large_batches_are_split_into_bounded_zone_event_messages_that_give_the_same_state():
    """600 maximal valid calls (~24 KB each) in one batch made a 12 MB zone-events message: the
    producer refused it and ingest stopped. Split messages must change nothing downstream."""

    msgs = [m for m in hostile.corpus() if m.expect != "rejected"]
    s = Settings(zones=hostile.ZONES_FILE, partitions=2)
    zones = load_zones(s.zones)
    router = Router(s, ZoneIndex(zones))
    whole = StateStage(s, zones, _NoWriter())
    split = StateStage(s, zones, _NoWriter())
    a = {p: whole.new_state(p) for p in range(2)}
    b = {p: split.new_state(p) for p in range(2)}
    limit = 50_000
    sizes = []
    for i in range(0, len(msgs), 700):
        prev = router.clock
        out, _dead, _rej, _pos = router.route([Rec(m.topic, 0, j, m.key, m.value, 1)
                                               for j, m in enumerate(msgs[i:i + 700], i)])
        for p, recs in out.items():
            whole.apply_batch(a[p], records.encode(router.clock, recs))
            parts = records.encode_split(recs, router.clock, prev, limit)
            sizes += [len(x) for x in parts]
            decoded = [records.decode(x) for x in parts]
            assert [r for d in decoded for r in d.events] == recs
            assert [d.clock for d in decoded] == [prev] * (len(parts) - 1) + [router.clock]
            for x in parts:
                split.apply_batch(b[p], x)
    assert max(sizes) <= limit and len(sizes) > 30
    docs = [{d["zone_id"]: d for st in states.values() for d in st.changed_documents(all_zones=True)}
            for states in (a, b)]
    assert docs[0] == docs[1] and len(docs[0]) == len(hostile.ZONE_IDS)
    small = [records.ZoneCall("x", 1, [], True, 1, "a", 1, "und")] * 3
    assert records.encode_split(small, 5, 4) == [records.encode(5, small)]  # small: one message
