"""`zonewatch replay` conversion: column mapping, local times, lat/lon splitting, value maps, JSONL.

Pure unit tests: no Kafka (the publishing path is exercised with a stand-in producer).
"""

from __future__ import annotations

import asyncio
import csv

import orjson
import pytest

from connectors import replay
from connectors.producer import encode_key, encode_value
from connectors.replay import Converter, ReplayError, parse_value_maps, split_latlon
from contract import events, topics
from contract.settings import Settings

SFFD_HEADER = ["Call Number", "Unit ID", "Call Type", "Received DtTm", "On Scene DtTm",
               "Original Priority", "Address", "Location"]
SFFD_ROWS = [
    ["170010123", "E01", "Medical Incident", "01/01/2017 12:30:00 AM", "01/01/2017 12:34:10 AM", "3",
     "0 Block of MARKET ST", "(37.7749, -122.4194)"],
    ["170010123", "M12", "Medical Incident", "01/01/2017 12:30:00 AM", "", "3",
     "0 Block of MARKET ST", "(37.7749, -122.4194)"],
    ["171851000", "E07", "Structure Fire", "07/04/2017 01:15:00 PM", "07/04/2017 01:19:00 PM", "E",
     "100 Block of MISSION ST", "(37.79, -122.39)"],
    ["", "T02", "Gas Leak (Natural and LP Gases)", "07/04/2017 11:59:59 PM", "", "A", "", "(37.70, -122.45)"],
    ["171860001", "E09", "Alarms", "not a time", "", "2", "", "nowhere"],
]
SFFD_ARGS = [
    "--topic", "calls.110",
    "--map", "call_id=Call Number", "--map", "ts=Received DtTm", "--map", "category=Call Type",
    "--map", "priority=Original Priority", "--latlon", "Location",
    "--ts-format", "%m/%d/%Y %I:%M:%S %p", "--tz", "America/Los_Angeles",
    "--value-map", "priority=E:1,3:2,2:3,1:4,A:4",
    "--value-map", "category=Medical Incident:medical,Structure Fire:fire,*:other",
    "--set", "lang=en",
]


@pytest.fixture
def sffd_csv(tmp_path):
    path = tmp_path / "sffd-sample.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SFFD_HEADER)
        w.writerows(SFFD_ROWS)
    return path


def dry_run(capsysbinary, argv) -> tuple[list, str]:
    assert replay.main(argv) == 0
    out, err = capsysbinary.readouterr()
    lines = [line for line in out.split(b"\n") if line]
    return [orjson.loads(line) for line in lines], err.decode()


def test_sffd_mapping_end_to_end(sffd_csv, capsysbinary):
    recs, err = dry_run(capsysbinary, [str(sffd_csv), *SFFD_ARGS, "--dry-run"])
    assert len(recs) == len(SFFD_ROWS)  # nothing dropped, duplicates included
    first = recs[0]
    # 01/01/2017 00:30:00 PST (UTC-8) = 2017-01-01T08:30:00Z
    assert first == {"call_id": "170010123", "ts": 1483259400000, "category": "medical", "priority": 2,
                     "lat": 37.7749, "lon": -122.4194, "lang": "en"}
    assert recs[1] == first  # the second unit of the same call: a duplicate the pipeline counts once
    # 07/04/2017 13:15:00 PDT (UTC-7, daylight saving time) = 2017-07-04T20:15:00Z
    assert recs[2]["ts"] == 1499199300000
    assert recs[2]["priority"] == 1 and recs[2]["category"] == "fire"
    # '*' fallback, 'A' -> 4, empty key field omitted (published with a null key)
    assert recs[3]["category"] == "other" and recs[3]["priority"] == 4
    assert "call_id" not in recs[3] and encode_key(topics.CALLS, recs[3]) is None
    # unconvertible row still published, as far as it could be converted
    assert recs[4]["ts"] == "not a time" and "lat" not in recs[4]
    assert "5 rows converted, 2 with problems" in err
    for rec in recs[:3]:
        events.validate_call(rec, max_ts=2**62)


def test_sffd_patrol_fixes_from_on_scene_times(sffd_csv, capsysbinary):
    recs, err = dry_run(capsysbinary, [
        str(sffd_csv), "--topic", "patrol.gps", "--map", "unit_id=Unit ID", "--map", "ts=On Scene DtTm",
        "--latlon", "Location", "--set", "status=busy", "--ts-format", "%m/%d/%Y %I:%M:%S %p",
        "--tz", "America/Los_Angeles", "--dry-run", "--limit", "3"])
    assert [r["unit_id"] for r in recs] == ["E01", "M12", "E07"]
    assert recs[0]["ts"] == 1483259650000 and recs[0]["status"] == "busy"
    assert "ts" not in recs[1]  # no on-scene time: empty -> omitted, reported
    assert "3 rows converted, 1 with problems" in err and "empty ts" in err


CAMERA_CSV = """DeviceID,ReportTime,Lat,Lng,State,Vendor
LZ-CAM-0001,2024-05-01 08:00:00,36.0601,103.8301,正常,hik
LZ-CAM-0002,2024-05-01 08:00:05,36.0702,103.8402,离线,dahua
LZ-CAM-0003,2024-05-01 08:00:07,36.0703,103.8403,,hik
LZ-CAM-0004,2024-05-01 08:00:09,36.0704,103.8404,FALSE,hik
LZ-CAM-0005,2024-05-01 08:00:11,36.0705,103.8405,维修中,hik
"""


def test_camera_status_export(tmp_path, capsysbinary):
    path = tmp_path / "cameras.csv"
    path.write_text(CAMERA_CSV, encoding="utf-8")
    recs, err = dry_run(capsysbinary, [
        str(path), "--topic", "camera.status", "--map", "camera_id=DeviceID", "--map", "ts=ReportTime",
        "--map", "lat=Lat", "--map", "lon=Lng", "--map", "online=State",
        "--value-map", "online=正常:true,离线:false", "--ts-format", "%Y-%m-%d %H:%M:%S", "--dry-run"])
    # 08:00:00 Asia/Shanghai (the default --tz) = 00:00:00Z
    assert recs[0] == {"camera_id": "LZ-CAM-0001", "ts": 1714521600000, "lat": 36.0601, "lon": 103.8301,
                       "online": True}
    assert recs[1]["online"] is False
    assert "online" not in recs[2]                  # an empty cell: the contract's default (true)
    assert recs[3]["online"] is False               # FALSE, any case
    assert recs[4]["online"] == "维修中"             # not a boolean: published, dead-lettered, reported
    assert "5 rows converted, 1 with problems" in err and "online '…' is not true/false" in err
    for rec in recs[:4]:
        assert events.validate_status(rec, 2**62)["camera_id"] == rec["camera_id"]
        assert encode_key(topics.STATUS, rec) == rec["camera_id"].encode()


def test_online_words():
    conv = Converter(topics.STATUS)
    base = {"camera_id": "c", "ts": 1686440000000, "lat": 1.0, "lon": 2.0}
    for word, want in (("true", True), ("Online", True), ("1", True), (1, True), ("yes", True), ("on", True),
                       ("OFF", False), ("offline", False), ("0", False), (0, False), ("no", False), (False, False)):
        rec, problems = conv.convert({**base, "online": word})
        assert (rec["online"], problems) == (want, []), word
    for bad in ("maybe", 2, 1.0, [True]):
        _rec, problems = conv.convert({**base, "online": bad})
        assert problems and problems[0].startswith("online "), bad


def test_sort_orders_by_converted_ts(sffd_csv, capsysbinary):
    recs, _ = dry_run(capsysbinary, [str(sffd_csv), *SFFD_ARGS, "--dry-run", "--sort"])
    ts = [r["ts"] for r in recs]
    assert ts[:4] == sorted(ts[:4]) and ts[4] == "not a time"  # unparseable ts go last


def test_mapped_column_missing_is_an_error(sffd_csv, capsysbinary):
    assert replay.main([str(sffd_csv), "--topic", "calls.110", "--map", "call_id=Call Numbr", "--dry-run"]) == 2
    err = capsysbinary.readouterr().err.decode()
    assert "'Call Numbr' not in the file" in err and "'Call Number'" in err


def test_local_time_conversion_in_tz():
    conv = Converter(topics.CALLS, ts_format="%m/%d/%Y %I:%M:%S %p", tz="America/Los_Angeles")
    assert conv.convert_ts("01/01/2017 12:30:00 AM") == 1483259400000
    assert conv.convert_ts("12/31/2016 11:57:56 PM") == 1483257476000
    shanghai = Converter(topics.CALLS, ts_format="%Y-%m-%d %H:%M:%S", tz="Asia/Shanghai")
    assert shanghai.convert_ts("2023-06-11 15:30:00") == 1686468600000  # 07:30Z
    with pytest.raises(ValueError):
        conv.convert_ts("2017-01-01")


def test_ts_without_format_passes_epoch_ms_and_rfc3339():
    conv = Converter(topics.CALLS, tz="Asia/Shanghai")
    assert conv.convert_ts(1686440000000) == 1686440000000
    assert conv.convert_ts("1686440000000") == 1686440000000
    assert conv.convert_ts("2023-06-11T07:30:00+08:00") == "2023-06-11T07:30:00+08:00"  # as it is
    assert conv.convert_ts("2023-06-11T07:30:00") == 1686439800000  # no offset: read in --tz
    epoch_s = Converter(topics.GPS, ts_format="epoch_s")
    assert epoch_s.convert_ts("1212991838") == 1212991838000


@pytest.mark.parametrize("raw, expected", [
    ("(37.745858648581, -122.456664252061)", (37.745858648581, -122.456664252061)),
    ("34.7426,113.5308", (34.7426, 113.5308)),
    ("34.7426 113.5308", (34.7426, 113.5308)),
    ("POINT (-122.4194 37.7749)", (37.7749, -122.4194)),
    ([34.7, 113.5], (34.7, 113.5)),
    ("", None), ("nowhere", None), ("(1, 2, 3)", None), (None, None),
])
def test_split_latlon(raw, expected):
    assert split_latlon(raw) == expected


def test_value_maps_parse_and_apply():
    maps = parse_value_maps(["priority=E:1,1:1,2:2,3:3,A:4", "category=Medical Incident:medical",
                             "category=Structure Fire:fire,*:other", "type=人脸布控:face_watchlist"])
    assert maps["priority"] == {"E": "1", "1": "1", "2": "2", "3": "3", "A": "4"}
    assert maps["category"] == {"Medical Incident": "medical", "Structure Fire": "fire", "*": "other"}
    conv = Converter(topics.CALLS, renames={"category": "kind of call"}, value_maps=maps)
    rec, problems = conv.convert({"call_id": "c1", "ts": "1686440000000", "lat": "34.7", "lon": "113.5",
                                  "kind of call": "Medical Incident", "priority": "E"})
    assert rec == {"call_id": "c1", "ts": 1686440000000, "lat": 34.7, "lon": 113.5,
                   "category": "medical", "priority": 1}
    assert problems == []
    rec, _ = conv.convert({"kind of call": "Odor (Strange / Unknown)", "priority": "7"})
    assert rec["category"] == "other" and rec["priority"] == 7  # unmapped priority: passes, coerced
    with pytest.raises(ReplayError):
        parse_value_maps(["priority"])


def test_set_constants_are_coerced_and_override():
    conv = Converter(topics.ALERTS, sets={"type": "Fire_Smoke", "severity": "2", "confidence": "0.9"})
    rec, problems = conv.convert({"alert_id": 17, "camera_id": "cam 1", "ts": 1686440000000,
                                  "lat": 34.7, "lon": 113.5, "type": "x"})
    assert rec["type"] == "fire_smoke" and rec["severity"] == 2 and rec["confidence"] == 0.9
    assert rec["alert_id"] == "17"  # ids become strings
    assert problems == []


def test_problems_are_reported_but_rows_kept():
    conv = Converter(topics.GPS)
    rec, problems = conv.convert({"unit_id": "u1", "ts": "yesterday", "lat": "north", "lon": "113.5",
                                  "speed": "", "status": "BUSY"})
    assert rec == {"unit_id": "u1", "ts": "yesterday", "lat": "north", "lon": 113.5, "status": "busy"}
    assert any(p.startswith("ts:") for p in problems) and any("lat" in p for p in problems)
    rec, problems = conv.convert({"unit_id": "u1", "ts": 1686440000000, "lat": "95", "lon": "113.5"})
    assert rec["lat"] == 95.0 and problems and "out of range" in problems[0]  # validator's reason


def test_jsonl_passthrough_and_extra_fields(tmp_path, capsysbinary):
    good = {"alert_id": "a1", "camera_id": "CAM-1", "ts": "2023-06-11T07:30:00+08:00", "lat": 34.7,
            "lon": 113.5, "type": "crowd_density", "confidence": 0.8, "severity": 3}
    extra = dict(good, alert_id="a2", vendor={"model": "x"})
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(orjson.dumps(good) + b"\n\n" + orjson.dumps(extra) + b"\n" + b'{"broken": \n'
                     + orjson.dumps([1, 2]) + b"\n")
    assert replay.main([str(path), "--topic", "camera.alerts", "--dry-run"]) == 0
    cap = capsysbinary.readouterr()
    out = [line for line in cap.out.split(b"\n") if line]
    assert orjson.loads(out[0]) == good  # unchanged
    assert orjson.loads(out[1]) == extra  # extra fields kept by default for JSONL
    assert out[2] == b'{"broken":' and out[3] == b"[1,2]"  # sent as raw bytes: the pipeline dead-letters
    assert b"4 rows converted, 2 with problems" in cap.err
    assert replay.main([str(path), "--topic", "camera.alerts", "--dry-run", "--extra", "drop"]) == 0
    second = orjson.loads(capsysbinary.readouterr().out.split(b"\n")[1])
    assert "vendor" not in second


def test_json_array_file(tmp_path):
    path = tmp_path / "calls.json"
    path.write_bytes(orjson.dumps([{"call_id": "1", "ts": 1686440000000}, 5]))
    _, rows = replay.read_rows(path, "jsonl")
    assert list(rows) == [{"call_id": "1", "ts": 1686440000000}, b"5"]


def test_key_and_value_encoding():
    assert encode_key(topics.GPS, {"unit_id": "警-01"}) == "警-01".encode()
    assert encode_key(topics.ALERTS, {"camera_id": 12}) == b"12"
    assert encode_key(topics.CALLS, {"call_id": ""}) is None
    assert encode_key(topics.CALLS, b"raw") is None
    assert encode_value({"a": 1}) == b'{"a":1}'
    assert encode_value(b"{not json") == b"{not json"


class FakeProducer:
    """Stands in for EventProducer: records what was sent and at which (fake) time."""

    def __init__(self, now=lambda: 0.0):
        self.now = now
        self.sent: list[tuple[str, object, float]] = []
        self.flushed = 0

    async def ensure_topics(self, topics):
        self.topics = list(topics)

    async def send(self, topic, rec):
        self.sent.append((topic, rec, self.now()))

    def check(self):
        pass

    async def flush(self):
        self.flushed += 1


def test_replay_records_max_and_paced(monkeypatch):
    from connectors import pacing

    clock = [0.0]

    async def sleep(s):
        clock[0] += s

    monkeypatch.setattr(pacing, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pacing, "sleep", sleep)
    recs = [{"call_id": str(i), "ts": ts} for i, ts in enumerate([1_000, 1_200, 1_100, 1_400, 1_400])]
    fake = FakeProducer()
    n = asyncio.run(replay.replay_records(recs, topics.CALLS, Settings(), producer=fake))
    assert n == 5 and [r for _, r, _ in fake.sent] == recs and fake.topics == [topics.CALLS]
    assert fake.flushed == 1 and clock[0] == 0.0
    fake = FakeProducer(lambda: clock[0])
    seen = []
    n = asyncio.run(replay.replay_records(recs + [b"garbage"], topics.CALLS, Settings(), speed=2.0,
                                          producer=fake, progress=seen.append))
    assert n == 6 and seen[-1] == 6
    # file order kept; only positive gaps count (200 ms, then 300 ms from the step back), at half speed
    assert [r for _, r, _ in fake.sent][:5] == recs
    assert [round(t, 6) for _, _, t in fake.sent] == [0.0, 0.1, 0.1, 0.25, 0.25, 0.25]
    with pytest.raises(ReplayError):
        asyncio.run(replay.replay_records(recs, "nope", Settings(), producer=fake))


def test_unreachable_kafka_is_a_loud_named_error():
    import socket

    from connectors.producer import EventProducer, KafkaUnavailable

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go():
        async with EventProducer(Settings(kafka=f"127.0.0.1:{port}")) as p:
            await p.send(topics.CALLS, {"call_id": "1"})

    with pytest.raises(KafkaUnavailable, match=r"cannot reach Kafka at 127\.0\.0\.1:\d+ — is `make up` running"):
        asyncio.run(go())
