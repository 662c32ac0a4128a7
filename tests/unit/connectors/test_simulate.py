"""`zonewatch simulate`: the command line around the scenario (start time, dry run). No Kafka."""

from __future__ import annotations

import orjson

from connectors import simulate
from connectors.simulate import default_start
from contract import topics


def test_default_start_keeps_simulated_time_behind_the_wall_clock():
    now = 1_800_000_000_000
    assert default_start(now, None, 3600) == now - 3_600_000  # --max: the hour just past
    s = default_start(now, 10.0, 3600)  # --speed 10: 6 wall minutes, sim ends at now + 6 min
    assert s + 3_600_000 == now + 360_000
    assert default_start(now, 1.0, 3600) == now
    assert default_start(now, 10.0, None) == now


def test_dry_run_cli(capsysbinary):
    assert simulate.main(["--dry-run", "--duration", "20", "--start", "2024-06-01T10:00:00+08:00",
                          "--seed", "1", "--bad-rate", "0.01"]) == 0
    lines = [orjson.loads(x) for x in capsysbinary.readouterr().out.splitlines() if x]
    assert lines and all(line["topic"] in topics.INPUT_TOPICS for line in lines)
    values = [line["value"] for line in lines if "value" in line]
    assert min(v["ts"] for v in values if isinstance(v.get("ts"), int)) >= 1717207200000
