"""`zonewatch replay` publishes a real-looking export without editing it: other column names,
local-time timestamps, a combined location column and enum translations, end to end into Redis."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import scenario
from tests.integration.conftest import REPO, wait_until

pytestmark = pytest.mark.integration

CSV = """Incident No,Received At,Where,Kind Of Incident,Urgency,Caller Phone
A-001,2023/06/12 08:00:05,"(34.71, 113.605)",Theft From Vehicle,High,13800000001
A-002,2023/06/12 08:01:10,"(34.71, 113.615)",Fight,Critical,13800000002
A-003,2023/06/12 08:02:00,"(34.71, 113.625)",Noise,Low,
A-003,2023/06/12 08:02:00,"(34.71, 113.625)",Noise,Low,
A-004,2023/06/12 08:03:00,"(91.5, 113.625)",Noise,Low,
"""


def test_replay_with_column_mapping_and_local_times(deployment, tmp_path):
    dep = deployment(scenario.ZONES_FILE, partitions=2)
    dep.start_worker()
    src = tmp_path / "export.csv"
    src.write_text(CSV, encoding="utf-8")
    cmd = [sys.executable, "-m", "zonewatch.cli", "replay", str(src), "--topic", "calls.110", "--max", "--quiet",
           "--map", "call_id=Incident No", "--map", "ts=Received At", "--latlon", "Where",
           "--map", "category=Kind Of Incident", "--map", "priority=Urgency", "--map", "caller=Caller Phone",
           "--ts-format", "%Y/%m/%d %H:%M:%S", "--tz", "Asia/Shanghai",
           "--value-map", "category=Theft From Vehicle:theft,Fight:violent,*:public_order",
           "--value-map", "priority=Critical:1,High:2,Low:4"]
    out = subprocess.run(cmd, env=dep.env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]

    def done():
        m = dep.metrics()
        return sum(m.values()) == 5 and m
    m = wait_until(done, what="five rows counted")
    assert (m[("calls", "accepted")], m[("calls", "duplicate")], m[("calls", "rejected")]) == (3.0, 1.0, 1.0)
    docs = wait_until(lambda: (d := dep.zone_docs()).get("A", {}).get("today", {}).get("calls") == 2 and d,
                      what="zone A")
    # 08:00:05 Asia/Shanghai = 00:00:05Z: the local time was converted, and the day is 2023-06-12
    assert docs["A"]["today"] == {"date": "2023-06-12", "calls": 2,
                                  "calls_by_category": {"theft": 1, "violent": 1},
                                  "calls_by_priority": {"1": 1, "2": 1}, "calls_by_lang": {"und": 2},
                                  "alerts": 0, "alerts_by_type": {}}
    assert docs["B"]["today"]["calls_by_category"] == {"public_order": 1, "violent": 1}
    assert docs["B"]["clock"] == scenario.ms(scenario.local(12, 8, 2))


CAMERAS = """DeviceID,ReportTime,Lat,Lng,State
LZ-CAM-0001,2024-05-01 08:00:00,36.0601,103.8301,正常
LZ-CAM-0002,2024-05-01 08:00:05,36.0702,103.8402,离线
LZ-CAM-0001,2024-05-01 08:05:00,36.0601,103.8301,正常
LZ-CAM-0003,2024-05-01 08:05:02,36.0703,103.8403,
"""


def test_replay_of_camera_status_reports_keyed_by_camera(deployment, tmp_path):
    """`--topic camera.status`: a platform's export, keyed by camera_id, in Kafka as the contract says."""
    import orjson

    dep = deployment(scenario.ZONES_FILE, partitions=2)
    src = tmp_path / "cameras.csv"
    src.write_text(CAMERAS, encoding="utf-8")
    cmd = [sys.executable, "-m", "zonewatch.cli", "replay", str(src), "--topic", "camera.status", "--max", "--quiet",
           "--map", "camera_id=DeviceID", "--map", "ts=ReportTime", "--map", "lat=Lat", "--map", "lon=Lng",
           "--map", "online=State", "--value-map", "online=正常:true,离线:false",
           "--ts-format", "%Y-%m-%d %H:%M:%S", "--tz", "Asia/Shanghai"]
    out = subprocess.run(cmd, env=dep.env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    msgs = dep.consume_all("camera.status", 4)
    got = sorted((m.key.decode(), orjson.loads(m.value)["ts"], orjson.loads(m.value).get("online")) for m in msgs)
    assert got == [("LZ-CAM-0001", 1714521600000, True), ("LZ-CAM-0001", 1714521900000, True),
                   ("LZ-CAM-0002", 1714521605000, False), ("LZ-CAM-0003", 1714521902000, None)]
    # one camera's reports share a partition, in order (the key is the camera id)
    parts = {m.partition for m in msgs if m.key == b"LZ-CAM-0001"}
    assert len(parts) == 1
