"""`zonewatch briefing`, the face: options, default date, output, exit codes. Kafka is replaced by
the fixture's messages here (tests/integration/test_briefing.py reads a real topic)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from reports import daily
from tests.golden.daily import GOLDEN, messages
from zonewatch import briefing as face
from zonewatch.cli import build_parser, main


@pytest.fixture
def topic(monkeypatch):
    """read_latest answers with the fixture; records what it was asked."""
    asked = []

    def read_latest(s, date=None, timeout_s=60.0):
        asked.append((s.kafka, s.topic_prefix, date, timeout_s))
        # as the reader does: whole values for the asked date, slim ones for the others
        msgs = [(k, v if v is None or date is None or k.startswith(f"{date}|".encode()) else daily.slim(v))
                for k, v in messages()]
        return "zones.daily", daily.fold_latest(msgs)

    monkeypatch.setattr(daily, "read_latest", read_latest)
    monkeypatch.delenv("ZONEWATCH_TZ", raising=False)
    return asked


def test_the_command_is_registered():
    args = build_parser().parse_args(["briefing"])
    assert args.func is face.run
    assert (args.date, args.format, args.lang, args.out) == (None, "md", "zh", None)


@pytest.mark.parametrize("bad", ["2023-6-12", "12.06.2023", "2023-02-30", "yesterday"])
def test_a_malformed_date_is_refused_by_the_parser(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["briefing", "--date", bad])
    assert exc.value.code == 2
    assert f"{bad!r} is not a date YYYY-MM-DD" in capsys.readouterr().err


def test_json_to_a_file_equals_the_golden_file(topic, tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(["briefing", "--date", "2023-06-12", "--format", "json", "--out", str(out), "--kafka", "k:1",
               "--timeout", "5"])
    assert rc == 0
    assert out.read_bytes() == GOLDEN.read_bytes()
    assert topic == [("k:1", "", "2023-06-12", 5.0)]
    assert "wrote" in capsys.readouterr().err


def test_markdown_to_stdout_in_english(topic, capsysbinary):
    assert main(["briefing", "--date", "2023-06-13", "--lang", "en"]) == 0
    out = capsysbinary.readouterr().out.decode("utf-8")
    assert out.startswith("# Daily briefing — 2023-06-13")
    assert "in progress: 1 of 2 zone records final" in out


def test_default_date_is_yesterday(topic, monkeypatch, capsysbinary):
    monkeypatch.setenv("ZONEWATCH_TZ", "Asia/Shanghai")

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2023, 6, 13, 1, 0, tzinfo=UTC).astimezone(tz)   # 09:00 on the 13th

    monkeypatch.setattr(face, "datetime", Frozen)
    assert main(["briefing", "--format", "json"]) == 0
    assert orjson.loads(capsysbinary.readouterr().out)["date"] == "2023-06-12"


def test_a_date_not_there_exits_2_listing_the_dates(topic, capsys):
    assert main(["briefing", "--date", "2023-05-01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zonewatch briefing: no zones.daily records for 2023-05-01; the dates there are: "
                          "2023-06-11, 2023-06-12, 2023-06-13 (in progress)")
    assert "Traceback" not in err


def test_an_unwritable_out_exits_2(topic, tmp_path, capsys):
    assert main(["briefing", "--date", "2023-06-12", "--out", str(tmp_path / "no" / "such" / "dir.md")]) == 2
    assert "cannot write it" in capsys.readouterr().err
