"""`zonewatch simulate`: the command line around the scenario (start time, dry run). No Kafka."""

from __future__ import annotations

import orjson
import pytest

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


def dry_run(capsysbinary, *args) -> list[dict]:
    assert simulate.main(["--dry-run", "--start", "2024-06-01T07:00:00+08:00", *args]) == 0
    return [orjson.loads(x) for x in capsysbinary.readouterr().out.splitlines() if x]


def test_the_demo_sends_no_status_unless_asked(capsysbinary):
    plain = dry_run(capsysbinary, "--duration", "900")
    assert {line["topic"] for line in plain} == {topics.CALLS, topics.GPS, topics.ALERTS}
    healthy = dry_run(capsysbinary, "--duration", "900", "--health")
    assert topics.STATUS in {line["topic"] for line in healthy}
    assert [x for x in healthy if x["topic"] == topics.CALLS] == [x for x in plain if x["topic"] == topics.CALLS]


def test_the_marathon_scenario(capsysbinary):
    lines = dry_run(capsysbinary, "--scenario", "marathon", "--duration", "900", "--units", "80")
    topics_seen = {line["topic"] for line in lines}
    assert topics_seen == set(topics.INPUT_TOPICS)
    units = {x["value"]["unit_id"] for x in lines if x["topic"] == topics.GPS}
    assert len(units) == 80 and all(u.startswith("LZ-") for u in units)
    off = dry_run(capsysbinary, "--scenario", "marathon", "--duration", "900", "--no-health")
    assert topics.STATUS not in {line["topic"] for line in off}


def test_write_zones_writes_the_scenarios_file(tmp_path, capsys):
    from connectors.scenario.marathon import MARATHON_ZONES
    from contract.settings import DEMO_ZONES

    assert simulate.main(["--write-zones", str(tmp_path / "d.geojson")]) == 0
    assert simulate.main(["--scenario", "marathon", "--write-zones", str(tmp_path / "m.geojson")]) == 0
    assert (tmp_path / "d.geojson").read_bytes() == DEMO_ZONES.read_bytes()
    assert (tmp_path / "m.geojson").read_bytes() == MARATHON_ZONES.read_bytes()


def test_bad_parameters_are_refused_before_anything_is_sent(capsys):
    assert simulate.main(["--dry-run", "--duration", "5", "--units", "0"]) == 2
    assert "units must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        simulate.main(["--scenario", "moon"])


class FakeProducer:
    """Stands in for EventProducer (`async with`): records the topics it checks and what it sends."""

    made: list[FakeProducer] = []

    def __init__(self, settings):
        self.checked, self.sent = None, []
        FakeProducer.made.append(self)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None

    async def ensure_topics(self, names):
        self.checked = tuple(names)

    async def send(self, topic, rec):
        self.sent.append(topic)

    def check(self):
        pass


@pytest.mark.parametrize("args,expect", [
    ([], (topics.CALLS, topics.GPS, topics.ALERTS)),          # the demo needs no camera.status topic
    (["--health"], topics.INPUT_TOPICS),
    (["--scenario", "marathon"], topics.INPUT_TOPICS),
])
def test_only_the_topics_a_run_uses_must_exist(monkeypatch, capsys, args, expect):
    from connectors import producer

    monkeypatch.setattr(producer, "EventProducer", FakeProducer)
    FakeProducer.made.clear()
    assert simulate.main(["--max", "--duration", "120", "--quiet", *args]) == 0
    (p,) = FakeProducer.made
    assert p.checked == expect and set(p.sent) <= set(expect) and p.sent
