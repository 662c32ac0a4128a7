"""bench/state_sizes.py measures what it says: the duplicate memory's bytes per id by tracemalloc,
and the district mix the soak runs."""

from __future__ import annotations

from bench.state_sizes import dedup, district_mix


def test_dedup_bytes_per_id_are_the_sealed_arrays_and_the_open_set():
    """28 hours of 2,000 ids: 26 sealed hours within the 26 h horizon plus the open hour; a sealed id
    is an 8-byte array entry (the array header spread over 2,000), an open one a set entry and its int."""
    d = dedup(2000, hours=28)
    assert (d["sealed_hours"], d["sealed_ids"], d["held_ids"]) == (26, 52_000, 54_000)
    assert 8.0 <= d["bytes_per_sealed_id"] < 8.2
    assert 40 < d["bytes_per_open_id"] < 200
    # a day's ids held on average: 26 sealed hours and half an open one, over 24 hours of ids
    want = (26 * 2000 * d["bytes_per_sealed_id"] + 1000 * d["bytes_per_open_id"]) / (24 * 2000)
    assert abs(d["bytes_per_id_per_day"] - want) < 0.05


def test_district_mix_is_the_soaks():
    rate, (fixes, alerts, calls) = district_mix(5200)
    assert round(rate, 1) == round(5200 / 7.5 + 20 + 1 / 6, 1)
    assert abs(fixes * rate - 5200 / 7.5) < 1e-6 and abs(alerts * rate - 20) < 1e-6
    assert abs(calls * rate * 60 - 10) < 1e-6


def test_snapshot_sizes_cover_the_whole_snapshot():
    """The parts encoded alone add up to the snapshot (msgpack headers aside), every unit and zone
    counted once whatever the partitions."""
    from bench.state_sizes import city_pipeline, snapshot_sizes

    pipe, n, _cpu = city_pipeline(200, 1.0, zone_name="demo")
    s = snapshot_sizes(pipe)
    assert n > 1500 and (s["partitions"], s["zones"], s["units"]) == (4, 39, 200)
    assert 0.95 < sum(s["parts"].values()) / s["bytes_raw"] < 1.05
    assert s["bytes_compressed"] < s["bytes_raw"]
    assert s["per_unit"] == round(s["parts"]["unit"] / 200) and s["per_zone"] == round(s["parts"]["zone"] / 39)
