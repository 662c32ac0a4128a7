"""A district's recorded input for timing `zonewatch drill` (issue 27's speed point; docs/DRILL.md
Speed): the city stream of bench/city.py (740 events per second of event time, 5,000 units, 2,000
cameras, the city's 412 zones) as the JSONL `--input` of §11, and the zones file beside it.

    python -m bench.drill_input --records 200000 --out /tmp/drill
    # then, on a stack of its own (ports 26xxx here):
    ZONEWATCH_KAFKA=127.0.0.1:26192 ZONEWATCH_REDIS=redis://127.0.0.1:26479/0 \
    ZONEWATCH_ZONES=/tmp/drill/city_zones.geojson zonewatch drill --from T0 --to T0+SPAN \
        --input /tmp/drill/district.jsonl --zones /tmp/drill/city_zones.geojson --format json --out d.json

It prints that command with T0 and the span filled in. `--zones` with the same file makes a variant
(two deployments, as a drill with a plan, zones or rules file runs); without it one deployment
serves both columns. The drill's stderr ends with its phases and its speed (× real time).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from .city import CityStream, zone_set

#: the recording's first event: 2023-06-12 10:00 +08:00, the day test_drill records
T0 = 1_686_535_200_000


def write(records: int, out_dir: Path, seed: int = 7) -> tuple[Path, Path, int]:
    """(the JSONL, the zones file, the event-time span in ms) of `records` city events from T0."""
    zones, _what, bbox = zone_set("city", out_dir)
    path = out_dir / "district.jsonl"
    last = T0
    with path.open("wb") as f:
        for topic, _key, value, ts in CityStream(bbox, seed=seed).events(records, T0):
            rec = orjson.loads(value)
            rec["topic"] = topic
            f.write(orjson.dumps(rec) + b"\n")
            last = max(last, ts)
    return path, zones, last - T0 + 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.drill_input", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=200_000, help="events (default 200,000: 4.5 min of a district)")
    p.add_argument("--out", type=Path, required=True, help="folder for district.jsonl and city_zones.geojson")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path, zones, span = write(args.records, args.out)
    print(f"{args.records} records, {span / 1000:.1f} s of event time: {path}")
    print(f"ZONEWATCH_ZONES={zones} zonewatch drill --from {T0} --to {T0 + span} --input {path} "
          f"--zones {zones} --format json --out drill.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
