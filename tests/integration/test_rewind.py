"""Rewind (CONTRACT §11, issue 27): GET /zones?at= and the wall's time slider on the real path.

A known sequence of events goes through Kafka and a real worker, one step at a time (each step's
stream clock reaches every zone before the next), so every zone is written at every step. Then:
every zones.state record is stamped with its document's clock; `GET /zones?at=` at instants
between and on the steps equals (a) what the sequence says (each zone's `clock` is the last step
at or before the instant, zone A's and B's calls today are the calls written there so far) and (b)
the documents of a brute-force read of the whole topic; 404 after the stream clock, before the
oldest record and before the retention; 400 for a bad TS. zones.state carries the retention as
min.compaction.lag.ms, also set by `ensure_topics` on an existing topic. The wall, in headless
Chromium, opens at a past moment from `?at=`, moves with its slider, and goes back to live in one
click (screenshots test-artifacts/wall-rewind*.png).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
import pytest

from contract import topics
from contract.kafka_settings import ensure_topics
from tests import scenario
from tests.integration.conftest import REPO, Deployment, wait_until
from tests.integration.test_gateway import TOKEN, GatewayProcess
from tests.integration.test_wall_browser import CHROMIUM, wall_page

pytestmark = pytest.mark.integration

MIN = 60_000
RETENTION_MS = 60 * MIN          # the gateway's ZONEWATCH_REWIND_RETENTION_MS in these tests
ZONE_IDS = {"A", "B", "outer", "inner", "core"}
TZ = ZoneInfo("Asia/Shanghai")
ARTIFACTS = REPO / "test-artifacts"


def steps(t0: int) -> list[tuple[int, str, dict]]:
    """(ts, topic, record): a fix in B first (every zone gets a document), calls in A and B, an
    alert in the core, a last fix; minutes apart in stream time."""
    return [
        (t0, topics.GPS, {"unit_id": "rw-u1", "ts": t0, "lat": scenario.PB[0], "lon": scenario.PB[1]}),
        (t0 + 5 * MIN, topics.CALLS, {"call_id": "rw-c1", "ts": t0 + 5 * MIN, "lat": scenario.PA[0],
                                      "lon": scenario.PA[1], "category": "theft", "priority": 2}),
        (t0 + 10 * MIN, topics.CALLS, {"call_id": "rw-c2", "ts": t0 + 10 * MIN, "lat": scenario.PA[0],
                                       "lon": scenario.PA[1], "category": "fraud", "priority": 3}),
        (t0 + 15 * MIN, topics.CALLS, {"call_id": "rw-c3", "ts": t0 + 15 * MIN, "lat": scenario.PB[0],
                                       "lon": scenario.PB[1], "category": "theft", "priority": 2}),
        (t0 + 20 * MIN, topics.ALERTS, {"alert_id": "rw-a1", "camera_id": "rw-cam", "ts": t0 + 20 * MIN,
                                        "lat": scenario.PCORE[0], "lon": scenario.PCORE[1],
                                        "type": "crowd_density", "confidence": 0.9}),
        (t0 + 30 * MIN, topics.GPS, {"unit_id": "rw-u1", "ts": t0 + 30 * MIN, "lat": scenario.PB[0],
                                     "lon": scenario.PB[1]}),
    ]


def local_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(TZ).date().isoformat()


class Written:
    """What the sequence says about any instant, from the sequence alone."""

    def __init__(self, seq):
        self.seq = seq

    def clock(self, at: int) -> int:
        return max(ts for ts, _t, _r in self.seq if ts <= at)

    def calls_today(self, at: int, point) -> int:
        clock = self.clock(at)
        return sum(1 for ts, topic, r in self.seq if topic == topics.CALLS and ts <= at
                   and (r["lat"], r["lon"]) == point and local_date(ts) == local_date(clock))


@pytest.fixture(scope="module")
def rewound(stack):
    """One deployment, worker and gateway; the sequence written step by step. Yields
    (deployment, gateway, steps, the zones.state records)."""
    dep = Deployment(stack, scenario.ZONES_FILE, partitions=2, name=f"rw-{uuid.uuid4().hex[:6]}")
    gw = None
    try:
        wport = dep.start_worker()
        gw = GatewayProcess(dep, wport, env={"ZONEWATCH_REWIND_RETENTION_MS": str(RETENTION_MS)})
        t0 = (int(time.time() * 1000) // 1000) * 1000 - 40 * MIN
        seq = steps(t0)
        for ts, topic, record in seq:
            dep.produce(topic, [record])
            wait_until(lambda ts=ts: (d := dep.zone_docs()) and set(d) == ZONE_IDS
                       and all(doc["clock"] == ts for doc in d.values()), timeout=60,
                       what=f"every zone written with clock {ts}")
        # zones.state is written after Redis: wait until it holds every zone at the last step
        last = seq[-1][0]
        records = wait_until(lambda: (r := dep.read_topic(topics.ZONES_STATE)) and
                             {m.key.decode() for m in r if orjson.loads(m.value)["clock"] == last} == ZONE_IDS
                             and r, timeout=30, what="zones.state holding the last step")
        yield dep, gw, seq, records
    finally:
        if gw is not None:
            gw.stop()
        dep.close()


def brute_force(records, at: int) -> dict[str, dict]:
    """Per zone, the document of its record with the greatest timestamp at or before `at`
    (the later offset among equals), over every record of the topic."""
    best: dict[str, tuple] = {}
    for m in records:
        z = m.key.decode()
        if m.timestamp <= at and (z not in best or (m.timestamp, m.offset) > best[z][:2]):
            best[z] = (m.timestamp, m.offset, orjson.loads(m.value))
    return {z: v[2] for z, v in best.items()}


def test_zones_state_records_are_stamped_with_their_clock(rewound):
    _dep, _gw, seq, records = rewound
    assert len(records) >= len(seq) * len(ZONE_IDS)
    for m in records:
        assert m.timestamp_type == 0, "CreateTime: the producer's stamp, not the broker's append time"
        assert m.timestamp == orjson.loads(m.value)["clock"], (m.partition, m.offset)
    assert {m.timestamp for m in records} >= {ts for ts, _t, _r in seq}


def test_zones_at_instants_equal_the_sequence_and_the_topic(rewound):
    _dep, gw, seq, records = rewound
    t = [ts for ts, _topic, _r in seq]
    written = Written(seq)
    instants = [t[0], t[0] + 5 * MIN - 1, t[1], t[1] + 1, t[2] - 1, t[3] + 2 * MIN, t[4] + 7 * MIN, t[5] - 1, t[5]]
    for at in instants:
        r = gw.get(f"/zones?at={at}")
        assert r.status_code == 200, (at, r.text)
        body = r.json()
        assert [d["zone_id"] for d in body] == sorted(ZONE_IDS), at
        got = {d["zone_id"]: d for d in body}
        # (a) the sequence: every zone as of the last step at or before `at`
        assert {z: d["clock"] for z, d in got.items()} == {z: written.clock(at) for z in ZONE_IDS}, at
        assert got["A"]["today"]["calls"] == written.calls_today(at, scenario.PA), at
        assert got["B"]["today"]["calls"] == written.calls_today(at, scenario.PB), at
        # (b) the whole topic read by brute force
        assert got == brute_force(records, at), at
        assert r.headers["X-Rewind-At"] == str(at)
        assert r.headers["X-Rewind-Missing"] == "0" and r.headers["X-Rewind-Complete"] == "true"
    # the versions only grow from one instant to the next
    a_versions = [next(d for d in gw.get(f"/zones?at={at}").json() if d["zone_id"] == "A")["version"]
                  for at in instants]
    assert a_versions == sorted(a_versions)
    # RFC 3339 with an offset names the same instant as epoch ms
    at = t[3] + 2 * MIN
    iso = datetime.fromtimestamp(at / 1000, UTC).astimezone(TZ).isoformat(timespec="milliseconds")
    assert gw.get(f"/zones?at={quote(iso)}").json() == gw.get(f"/zones?at={at}").json()
    # the live answer is the last step's
    assert {d["zone_id"]: d for d in gw.get("/zones").json()} == brute_force(records, t[5])


def test_zones_at_outside_the_retention_is_404_and_a_bad_at_400(rewound):
    _dep, gw, seq, _records = rewound
    t0, last = seq[0][0], seq[-1][0]
    r = gw.get(f"/zones?at={last + 1}")
    assert r.status_code == 404 and "after the stream clock" in r.json()["error"]
    r = gw.get(f"/zones?at={t0 - 1}")
    assert r.status_code == 404 and "oldest" in r.json()["error"]
    assert last - RETENTION_MS < t0 - 1                       # (that one was inside the retention)
    r = gw.get(f"/zones?at={last - RETENTION_MS - 1}")
    assert r.status_code == 404 and "retention" in r.json()["error"]
    for bad in ("", "yesterday", "2023-06-11T09:30:00", "2023-06-11T09:30:00 08:00", "-1", "1.5e12",
                f"{last}&at={last}", "1999-12-31T23:59:59Z"):
        r = gw.get(f"/zones?at={bad}")
        assert r.status_code == 400, (bad, r.status_code, r.text)
    assert gw.get(f"/zones?at={last}", headers={}).status_code == 401


def test_zones_state_keeps_the_retention_and_ensure_topics_sets_it_on_an_existing_topic(rewound):
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    dep, *_ = rewound
    name = dep.settings.topic(topics.ZONES_STATE)

    def configs():
        admin = KafkaAdminClient(bootstrap_servers=dep.settings.kafka)
        try:
            got = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all")
        finally:
            admin.close()
        return {k: v["value"] for k, v in got["topic"][name].items()}

    held = configs()
    assert held["min.compaction.lag.ms"] == str(7 * 24 * 3600 * 1000)   # the default retention, as created
    assert held["message.timestamp.type"] == "CreateTime" and held["cleanup.policy"] == "compact"
    said: list[str] = []
    assert ensure_topics(dep.settings.with_(rewind_retention_ms=RETENTION_MS), said=said.append) == []
    assert said == [f"{name}: min.compaction.lag.ms {7 * 24 * 3600 * 1000} -> {RETENTION_MS}"]
    held = configs()
    assert held["min.compaction.lag.ms"] == str(RETENTION_MS)
    assert held["cleanup.policy"] == "compact"                           # the rest stays
    said.clear()
    ensure_topics(dep.settings.with_(rewind_retention_ms=RETENTION_MS), said=said.append)
    assert said == []                                                     # nothing to change any more


def test_the_wall_rewinds_with_its_slider_and_goes_back_to_live(rewound):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/install-browser.sh (Debian's chromium) first")

    _dep, gw, seq, records = rewound
    t = [ts for ts, _topic, _r in seq]
    first, second = t[1] + MIN, t[3] + 2 * MIN

    def shown_at(at: int) -> dict[str, str]:
        """What the table shows at `at`, from the topic read by brute force (a local midnight
        within the sequence changes the figures, not this)."""
        docs = brute_force(records, at)
        return {"A": str(docs["A"]["today"]["calls"]), "B": str(docs["B"]["today"]["calls"]),
                "core alerts": str(docs["core"]["today"]["alerts"])}

    errors: list[str] = []
    with wall_page(errors) as page:

        def cell(zone: str, column: str) -> str:
            return page.locator(f'tr[data-zone="{zone}"] .{column}').text_content()

        def table() -> dict[str, str]:
            return {"A": cell("A", "c-calls"), "B": cell("B", "c-calls"), "core alerts": cell("core", "c-alerts")}

        def header_clock() -> str:
            return page.locator("#clock .v").text_content()

        def background() -> str:
            return page.evaluate("getComputedStyle(document.body).backgroundColor")

        page.goto(f"{gw.url}/?token={TOKEN}")
        live = shown_at(t[5])
        page.wait_for_function(f"""() => {{ const c = document.querySelector('tr[data-zone="A"] .c-calls');
                                          return c && c.textContent === '{live["A"]}'; }}""", timeout=30_000)
        assert table() == live
        live_bg, live_clock = background(), header_clock()
        assert page.locator("#rewind-banner").is_hidden()

        # opened at a past moment: ?at= in the address
        page.goto(f"{gw.url}/?token={TOKEN}&at={first}")
        page.wait_for_selector(f'#rewind-banner[data-at="{first}"]', state="visible", timeout=30_000)
        assert page.evaluate("document.body.dataset.rewind") == "past"
        assert f"at={first}" in page.url and "token=" not in page.url
        assert table() == shown_at(first)
        assert header_clock() != live_clock          # the header's stream clock is the moment's
        assert background() != live_bg
        banner = page.locator("#rewind-banner").inner_text()
        assert "PAST MOMENT" in banner and "not live" in banner and "Back to live" in banner
        assert page.locator("#incidents").is_hidden()        # live-only panels hidden in the past
        page.wait_for_timeout(400)
        page.screenshot(path=str(ARTIFACTS / "wall-rewind.png"))

        # the slider: to a moment after the third call, then a minute back
        page.locator("#rewind-slider").evaluate(
            "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change')); }",
            str(second))
        page.wait_for_selector(f'#rewind-banner[data-at="{second}"]', state="visible", timeout=30_000)
        assert table() == shown_at(second)
        assert f"at={second}" in page.url
        page.click("#rewind-back")
        page.wait_for_selector(f'#rewind-banner[data-at="{second - MIN}"]', state="visible", timeout=30_000)
        assert table() == shown_at(second - MIN)
        past_clock = header_clock()
        page.screenshot(path=str(ARTIFACTS / "wall-rewind-slider.png"))

        # back to live in one click
        page.click("#rewind-live")
        page.wait_for_function("() => document.body.dataset.rewind === 'live'", timeout=10_000)
        assert page.locator("#rewind-banner").is_hidden()
        assert table() == live and header_clock() == live_clock != past_clock
        assert "at=" not in page.url
        assert background() == live_bg
        assert page.locator("#incidents").is_visible()
        page.screenshot(path=str(ARTIFACTS / "wall-rewind-live.png"))

        # a moment before the oldest record: the page says so and stays live
        page.goto(f"{gw.url}/?token={TOKEN}&at={t[0] - 1}")
        page.wait_for_function("() => document.querySelector('#rewind-msg').textContent.includes('no record')",
                               timeout=30_000)
        assert page.evaluate("document.body.dataset.rewind") == "live"
        assert page.locator("#rewind-banner").is_hidden()
    # the one refusal asked for above, as the browser logs it
    errors = [e for e in errors if not ("404" in e and f"at={t[0] - 1}" in e)]
    assert not errors, errors
