"""bench/drill_input.py: the JSONL it writes is the city stream, record for record, as the drill
reads it (zonewatch/drill_run.py `read_file`)."""

import orjson

from bench import drill_input
from bench.city import CityStream, zone_set
from zonewatch import drill_run


def test_the_drill_reads_back_the_city_stream(tmp_path):
    path, zones, span = drill_input.write(3000, tmp_path)
    _zones, _what, bbox = zone_set("city", tmp_path / "again")
    want = [(t, k, orjson.loads(v), ts) for t, k, v, ts in CityStream(bbox, seed=7).events(3000, drill_input.T0)]
    got = drill_run.read_file(path, drill_input.T0, drill_input.T0 + span)
    assert [(t, k, orjson.loads(v), ts) for t, k, v, ts in got.records] == sorted(want, key=lambda r: r[3])
    assert got.span_ms == span - 1 and zones.is_file()
    assert {t for t, *_ in got.records} == {"patrol.gps", "camera.alerts", "calls.110"}


def test_the_recording_holds_each_record_in_about_its_own_size(tmp_path):
    """A district day is ~26.6 M records held at once: read_file keeps each value in its own size,
    not in the buffer orjson wrote it into (~4 KB each, 110 GB a day). Allocations, not timings."""
    import tracemalloc

    path, _zones, span = drill_input.write(2000, tmp_path)
    tracemalloc.start()
    try:
        got = drill_run.read_file(path, drill_input.T0, drill_input.T0 + span)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    line_bytes = path.stat().st_size / len(got.records)   # ~140 bytes of JSON a record
    assert held / len(got.records) < 4 * line_bytes
