"""zones.state records carry their document's stream clock as Kafka timestamp (CONTRACT §11: the
gateway's GET /zones?at= finds a moment by it). `OutputSender.zone_state_records` makes the records
the partition's producer sends (streams/kafka_fence.py passes the fifth field as timestamp_ms): the
timestamp of each is exactly its document's `clock`, for the worker's own documents and for any
clock under any name."""

from __future__ import annotations

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from contract.events import MIN_TS_MS
from contract.settings import Settings
from streams.outputs import OutputSender, clock_of
from streams.testing import Pipeline
from tests import scenario
from tests.unit.streams.test_pipeline import messages


def sent_by_zone_states(docs: list[bytes], ids: list[str]) -> list[tuple]:
    """(topic, key, value, timestamp) of the zones.state records of these documents."""
    sender = OutputSender(Settings(zones=scenario.ZONES_FILE), None, None)  # type: ignore[arg-type]
    return [(topic, key, value, stamp) for topic, key, value, _part, stamp in sender.zone_state_records(docs, ids)]


def test_the_workers_documents_are_stamped_with_their_clock():
    pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=2))
    pipe.feed(messages(), batch=3)
    docs = pipe.documents()
    assert len(docs) == 5
    encoded = [orjson.dumps(d) for d in docs.values()]
    sent = sent_by_zone_states(encoded, list(docs))
    want = [("zones.state", z.encode(), js) for z, js in zip(docs, encoded, strict=True)]
    assert [(t, k, v) for t, k, v, _ts in sent] == want
    assert [ts for *_rest, ts in sent] == [d["clock"] for d in docs.values()]


names = st.text(st.sampled_from(['"', "\\", ":", ",", "}", "{", "c", "l", "o", "k", "1", " ", "区"]), max_size=30)


@settings(max_examples=200, deadline=None)
@given(clock=st.integers(MIN_TS_MS, 4_102_444_800_000), name=names, zone_id=names.filter(bool),
       ring=st.one_of(st.none(), names))
@example(clock=1_077_464_368_291, name="", zone_id="A", ring=None)    # Faust's ms / 1000 gives ...290
@example(clock=2_181_123_637_969, name='"clock":5,', zone_id='{"clock":7}', ring='"clock":9}')
def test_any_clock_under_any_name_is_the_timestamp(clock, name, zone_id, ring):
    doc = {"zone_id": zone_id, "name": name, "kind": "district", "ring": ring, "version": 3, "clock": clock,
           "level": "green", "today": {"clock": 1}, "windows": {}}
    js = orjson.dumps(doc)
    assert clock_of(js) == clock
    (_topic, key, value, ts), = sent_by_zone_states([js], [zone_id])
    assert (key, value, ts) == (zone_id.encode(), js, clock)
