"""The zones.daily fixture of the briefing tests (zones_daily.jsonl) and its golden briefing.

zones_daily.jsonl is the sequence of records a producer wrote, in offset order: one JSON line per
record, `{"key": "{date}|{zone_id}", "value": {...}}`, `"value": null` for a tombstone, or
`"value_raw": "..."` for a value that is not a zone's day. It holds superseded versions, two
tombstones, an unreadable value, three closed days and one day still in progress. briefing.json is
`zonewatch briefing --date 2023-06-12 --format json` of it, checked by hand figure by figure in
tests/unit/reports/test_briefing.py; after a deliberate change of the report, regenerate it with
`python -m tests.golden.daily > tests/golden/briefing.json` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson

HERE = Path(__file__).parent
FIXTURE = HERE / "zones_daily.jsonl"
GOLDEN = HERE / "briefing.json"
DATE = "2023-06-12"


def messages() -> list[tuple[bytes, bytes | None]]:
    """(key, value) in offset order, values as a producer sends them (None = tombstone)."""
    out = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "value_raw" in row:
            value = row["value_raw"].encode()
        else:
            value = None if row["value"] is None else orjson.dumps(row["value"])
        out.append((row["key"].encode(), value))
    return out


if __name__ == "__main__":
    import sys

    from reports import daily
    from reports.briefing import briefing
    from reports.render import render_json

    records, unreadable = daily.decode(daily.fold_latest(messages()))
    sys.stdout.write(render_json(briefing(records, DATE, unreadable)))
