"""POST /ingest through the real pipeline: gateway -> Kafka -> worker -> Redis.

* 10,000-record bodies (NDJSON, a JSON array, NDJSON by shape) all reach the worker and are counted
  (zonewatch_events_total); tokens (401, 403 both ways, intake off = 404); the limits (413);
  no caller number, call text or token in the gateway's log at --log-level debug with the access log;
* the hostile corpus of tests/hostile.py by POST: one rejection each with the worker's reason, the
  valid ones counted by the worker exactly as when published to Kafka directly;
* Kafka stopped while a client posts: 503 + Retry-After while it is down, and among the records
  answered accepted none lost, none counted twice (the client re-sends 503'd bodies; records of a
  503'd body that had landed are counted once by the pipeline's dedup).

The broker test stops the session's Kafka (deploy/stack.py's stop_service) and starts it again; it
comes last in this module.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import httpx
import orjson
import pytest

from contract import topics
from deploy import stack as stack_module
from gateway.intake import MAX_BYTES, MAX_RECORDS
from tests import hostile, scenario
from tests.integration.conftest import REDIS_PORT, REPO, wait_until
from tests.integration.test_gateway import AUTH, TOKEN, GatewayProcess

pytestmark = pytest.mark.integration

INGEST_TOKEN = "ingest-token-0123456789"
IAUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}
NDJSON = "application/x-ndjson"
STATE = REPO / ".stack" / "test"
TEXT_MARK = "intake-text-marker"


def intake_gateway(dep, wport=None, extra=()):
    return GatewayProcess(dep, wport, extra=extra, env={"ZONEWATCH_INGEST_TOKENS": INGEST_TOKEN})


def post(gw, source: str, body: bytes, content_type: str | None = NDJSON, headers=None, timeout=120.0):
    h = dict(IAUTH if headers is None else headers)
    if content_type:
        h["Content-Type"] = content_type
    return httpx.post(f"{gw.url}/ingest/{source}", content=body, headers=h, timeout=timeout)


def ndjson(records) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def read_topic(dep, topic: str) -> list:
    """Every record of an input topic, up to its end offsets now."""
    from kafka import KafkaConsumer, TopicPartition

    from contract.kafka_settings import kafka_python_kwargs

    c = KafkaConsumer(bootstrap_servers=dep.settings.kafka, enable_auto_commit=False, group_id=None,
                      **kafka_python_kwargs(dep.settings))
    try:
        name = dep.settings.topic(topic)
        tps = [TopicPartition(name, p) for p in sorted(c.partitions_for_topic(name))]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        out: list = []
        deadline = time.monotonic() + 120
        while any(c.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=1000).values():
                out.extend(recs)
        return out
    finally:
        c.close()


def counted(dep) -> dict:
    try:
        return dep.metrics()
    except OSError:
        return {}


def test_ten_thousand_records_per_post_reach_the_worker_and_are_counted(deployment):
    dep = deployment(scenario.ZONES_FILE, partitions=4)
    wport = dep.start_worker()
    gw = intake_gateway(dep, wport, extra=("--log-level", "debug", "--access-log"))
    rng = random.Random(14)
    now = int(time.time() * 1000)
    t0 = now - 120_000
    places = [scenario.PA, scenario.PB, scenario.PAB, scenario.PCORE, scenario.PNONE]
    calls = [{"call_id": f"ic-{i}", "ts": t0 + i, "lat": places[i % 5][0], "lon": places[i % 5][1],
              "category": rng.choice(["theft", "fraud", "violent"]), "priority": rng.randint(1, 4),
              "caller": f"139{i:08d}", "lang": rng.choice(["zh", "en"]), "text": f"{TEXT_MARK} {i}"}
             for i in range(MAX_RECORDS)]
    # the units patrol ~2.2 km north of the calls: 10,000 calls open at five points with 100 units among
    # them (every fix meeting thousands of open calls) is a dispatch stress, not what this test is about
    fixes = [{"unit_id": f"iu-{i % 100}", "ts": t0 + i, "lat": places[i % 4][0] + 0.02 + (i % 7) * 1e-4,
              "lon": places[i % 4][1], "status": "available", "kind": "car"} for i in range(MAX_RECORDS)]
    # 11+ minutes before the calls: no alert corroborates a call (10,000 calls with 50 corroborating
    # alerts each would be a pathological burst, not what this test is about); at the calls' places,
    # which cost seconds per zone-events message while IncidentState.on_alert walked every call open
    # near an alert's cell (now only those within 10 min of it: bench/dense_cell.py `alert-before`)
    alerts = [{"alert_id": f"ia-{i}", "camera_id": f"cam-{i % 50}", "ts": t0 - 700_000 - i, "lat": places[i % 5][0],
               "lon": places[i % 5][1], "type": "crowd_density", "confidence": 0.9} for i in range(MAX_RECORDS)]
    status = [{"camera_id": f"cam-{i}", "ts": t0 + 1000 + i, "lat": places[i % 5][0], "lon": places[i % 5][1],
               "online": i % 10 != 0} for i in range(1000)]
    try:
        assert httpx.get(f"{gw.url}/healthz", timeout=5).json()["intake"] == "connected"
        # tokens: none 401, a read token 403 on /ingest, an ingest token 403 on reads
        assert post(gw, "calls", ndjson(calls[:1]), headers={}).status_code == 401
        r = post(gw, "calls", ndjson(calls[:1]), headers=AUTH)
        assert r.status_code == 403 and "ingest" in r.json()["error"]
        assert gw.get("/zones", headers=IAUTH).status_code == 403
        assert gw.get("/zones").status_code == 200
        assert post(gw, "nope", b"{}").status_code == 404
        assert httpx.get(f"{gw.url}/ingest/calls", headers=IAUTH).status_code == 405

        # one 10,000-record body per format; answered once Kafka has every record
        rates = {}
        for source, body, ctype, n in (("calls", ndjson(calls), NDJSON, len(calls)),
                                       ("gps", orjson.dumps(fixes), "application/json", len(fixes)),
                                       ("alerts", ndjson(alerts), None, len(alerts)),      # NDJSON by shape
                                       ("status", orjson.dumps(status), "application/json", len(status)),
                                       ("status", orjson.dumps(dict(status[0], ts=t0 + 5000)), "application/json", 1)):
            started = time.perf_counter()
            r = post(gw, source, body, ctype)
            took = time.perf_counter() - started
            assert r.status_code == 200, r.text[:300]
            assert r.json() == {"accepted": n, "rejected": []}
            rates[f"{source} ({ctype or 'no type'}, {n} records)"] = (n, len(body), took)
        for source, (n, size, took) in rates.items():
            print(f"\nPOST /ingest/{source}: {n} records, {size / 1e6:.1f} MB, {took:.2f} s = "
                  f"{n / took:,.0f} records/s")

        want = {("calls", "accepted"): 10_000, ("gps", "accepted"): 10_000, ("alerts", "accepted"): 10_000,
                ("status", "accepted"): 1001}
        try:
            wait_until(lambda: all(counted(dep).get(k) == v for k, v in want.items()), timeout=120, interval=0.5,
                       what="every posted record counted by the worker")
        except AssertionError as e:   # say what was counted, and what the worker said
            raise AssertionError(f"{e}; counted {counted(dep)}; worker log: "
                                 f"{dep.workers[0][2].read_text()[-4000:]}") from None
        got = dep.metrics()
        assert {k: v for k, v in got.items() if v} == want   # no duplicate, no rejection
        assert gw.metric('zonewatch_gateway_ingest_records_total{outcome="accepted",source="calls"}') == 10_000
        assert gw.metric('zonewatch_gateway_ingest_records_total{outcome="accepted",source="gps"}') == 10_000
        # the zone state counts them: A holds calls at PA and PAB (i % 5 in 0, 2) on today's date
        docs = wait_until(lambda: (d := dep.zone_docs()).get("A") and d["A"]["today"]["calls"] == 4000 and d,
                          timeout=60, what="zone A's calls today")
        assert docs["B"]["today"]["calls"] == 4000 and docs["core"]["today"]["calls"] == 2000
        assert docs["A"]["today"]["calls_by_lang"] == dict(Counter(c["lang"] for i, c in enumerate(calls)
                                                                   if i % 5 in (0, 2)))

        # limits: over 10 MB, over 10,000 records (413); the gateway is fine afterwards
        r = post(gw, "calls", b"{" + b" " * MAX_BYTES + b"}", "application/json")
        assert r.status_code == 413 and "bytes" in r.json()["error"]
        r = post(gw, "calls", ndjson(calls) + orjson.dumps(calls[0]), NDJSON)
        assert r.status_code == 413 and "records" in r.json()["error"]
        r = post(gw, "calls", orjson.dumps([*calls, calls[0]]), "application/json")
        assert r.status_code == 413 and "10001 records" in r.json()["error"]
        assert gw.get("/zones").status_code == 200
    finally:
        gw.stop()

    # nothing of the bodies in the log (debug level, access log on), and no token
    log = gw.log.read_text(errors="replace")
    assert "POST /ingest/calls" in log      # the access log was on
    assert TEXT_MARK not in log and INGEST_TOKEN not in log and TOKEN not in log
    leaked = [c["caller"] for c in calls if c["caller"] in log]
    assert not leaked, f"{len(leaked)} caller numbers in the gateway log, e.g. {leaked[:3]}"

    # without ZONEWATCH_INGEST_TOKENS intake is off: 404, whatever the token
    off = GatewayProcess(dep, wport)
    try:
        for h in (IAUTH, AUTH, {}):
            r = post(off, "calls", ndjson(calls[:1]), headers=h)
            assert r.status_code == 404 and "ZONEWATCH_INGEST_TOKENS" in r.json()["error"]
    finally:
        off.stop()


def test_the_hostile_corpus_by_post_gives_one_rejection_each_with_its_reason(deployment):
    msgs = hostile.corpus()
    dep = deployment(hostile.ZONES_FILE, partitions=4)
    dep.start_worker()
    gw = intake_gateway(dep, extra=("--log-level", "debug", "--access-log"))
    answers: dict[int, str] = {}   # corpus index -> "accepted" or the rejection reason
    posts = Counter()

    def send(topic: str, idx: list[int], body: bytes, ctype: str) -> None:
        r = post(gw, hostile.SOURCE[topic], body, ctype)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        a = r.json()
        rejected = {x["index"]: x["reason"] for x in a["rejected"]}
        assert a["accepted"] + len(rejected) == len(idx)
        for k, i in enumerate(idx):
            answers[i] = rejected.get(k, "accepted")
        posts[ctype] += 1

    try:
        for topic in hostile.TOPICS:
            batch: list[int] = []
            size = 0

            def flush(topic=topic):
                nonlocal batch, size
                if batch:
                    send(topic, batch, b"".join(msgs[i].value + b"\n" for i in batch), NDJSON)
                batch, size = [], 0

            for i, m in enumerate(msgs):
                if m.topic != topic:
                    continue
                if m.value is None or b"\n" in m.value:
                    # not one NDJSON line: a body of its own, one JSON document (an empty body is an
                    # empty value, as a null Kafka value)
                    flush()
                    send(topic, [i], m.value or b"", "application/json")
                    continue
                if len(batch) == MAX_RECORDS or size + len(m.value) + 1 > MAX_BYTES:
                    flush()
                batch.append(i)
                size += len(m.value) + 1
            flush()
        assert len(answers) == len(msgs)
        for i, m in enumerate(msgs):
            if m.expect == "rejected":
                assert answers[i] != "accepted" and m.reason in answers[i], (i, m.cls, m.reason, answers[i])
            else:
                assert answers[i] == "accepted", (i, m.cls, answers[i])
        n_bad = sum(m.expect == "rejected" for m in msgs)
        print(f"\nhostile corpus by POST: {len(msgs)} messages in {sum(posts.values())} bodies ({dict(posts)}), "
              f"{n_bad} rejected with their reasons")

        # the worker counts the valid ones exactly as if they had been published to Kafka directly;
        # nothing reaches it to reject, so the dead-letter topic stays empty
        want = {k: float(v) for k, v in hostile.expected_counts(msgs).items() if k[1] != "rejected"}
        wait_until(lambda: sum(counted(dep).values()) >= sum(want.values()), timeout=120, interval=0.5,
                   what="the valid messages counted")
        got = dep.metrics()
        assert {k: v for k, v in got.items() if k[1] != "rejected"} == want
        assert sum(v for k, v in got.items() if k[1] == "rejected") == 0
        docs = wait_until(lambda: (d := dep.zone_docs()) and len(d) == len(hostile.ZONE_IDS)
                          and all(x["clock"] == hostile.FINAL_CLOCK for x in d.values()) and d,
                          timeout=60, what="zone documents at the final clock")
        assert {z: d["today"] for z, d in docs.items()} == hostile.expected_today(msgs)
        assert dep.consume_all(topics.DEADLETTER, 1, timeout=5) == []
    finally:
        gw.stop()
    log = gw.log.read_text(errors="replace")
    callers = {m.norm["caller"] for m in msgs if m.norm and m.norm.get("caller")} | {"13800138000"}
    assert len(callers) > 100
    assert not [c for c in callers if c in log], "caller numbers in the gateway log"


def test_a_broker_stopped_during_posts_gives_503_and_loses_or_doubles_no_accepted_record(stack, deployment):
    dep = deployment(scenario.ZONES_FILE, partitions=2)
    wport = dep.start_worker()
    gw = intake_gateway(dep, wport, extra=("--ingest-timeout", "3"))
    n_batches, per = 60, 500
    t0 = int(time.time() * 1000) - 600_000
    batches = [[{"call_id": f"bk-{b}-{i}", "ts": t0 + b * per + i, "lat": scenario.PA[0], "lon": scenario.PA[1],
                 "category": "theft", "priority": 3} for i in range(per)] for b in range(n_batches)]
    answers: list[tuple[int, int, str | None]] = []   # (batch, status, Retry-After) in order
    failures: list[str] = []
    kafka_stopped = threading.Event()

    def client():
        try:
            for b, batch in enumerate(batches):
                body = ndjson(batch)
                while True:
                    r = post(gw, "calls", body, timeout=60)
                    answers.append((b, r.status_code, r.headers.get("retry-after")))
                    if r.status_code == 200:
                        assert r.json() == {"accepted": per, "rejected": []}, r.text[:200]
                        break
                    assert r.status_code == 503, (r.status_code, r.text[:200])
                    time.sleep(1.0)   # a real client waits Retry-After (5 s); 1 s keeps the test short
                if not kafka_stopped.is_set():
                    time.sleep(0.05)
        except BaseException as exc:   # reported by the main thread
            failures.append(repr(exc))

    t = threading.Thread(target=client, daemon=True)
    try:
        t.start()
        wait_until(lambda: sum(s == 200 for _b, s, _r in answers) >= 10 or failures, timeout=60,
                   what="10 bodies accepted before the outage")
        stack_module.stop_service("kafka", STATE)
        kafka_stopped.set()
        wait_until(lambda: sum(s == 503 for _b, s, _r in answers) >= 3 or failures or not t.is_alive(), timeout=90,
                   what="503s while Kafka is down")
        kport = int(stack["kafka"].rsplit(":", 1)[1])
        stack_module.up(kafka_port=kport, redis_port=REDIS_PORT, state_dir=STATE)
        t.join(timeout=300)
        assert not t.is_alive(), "the client did not finish after Kafka came back"
        assert not failures, failures
    finally:
        gw.stop()

    refused = [(b, ra) for b, s, ra in answers if s == 503]
    assert len(refused) >= 3 and all(ra == "5" for _b, ra in refused), refused[:5]
    accepted_at_first = {b for b in range(n_batches) if [s for bb, s, _r in answers if bb == b] == [200]}
    retried = set(range(n_batches)) - accepted_at_first
    assert retried, "no body was refused"
    assert {b for b, s, _r in answers if s == 200} == set(range(n_batches))

    # Kafka holds every accepted record; those of bodies accepted at the first try exactly once
    # (the idempotent producer's retries across the broker's restart doubled nothing); records of a
    # 503'd body may be there twice (they had landed, then the client sent the body again)
    total = n_batches * per
    recs = read_topic(dep, topics.CALLS)
    in_kafka = Counter(orjson.loads(r.value)["call_id"] for r in recs)
    want_ids = {c["call_id"] for batch in batches for c in batch}
    assert set(in_kafka) == want_ids, f"{len(want_ids - set(in_kafka))} accepted records lost"
    first = {c["call_id"] for b in accepted_at_first for c in batches[b]}
    assert all(in_kafka[c] == 1 for c in first), "a record accepted at the first try is in Kafka twice"
    # ...and the worker counts every accepted record once, the repeats as duplicates
    extra = sum(in_kafka.values()) - total
    want = {("calls", "accepted"): total, ("calls", "duplicate"): extra}
    wait_until(lambda: all(counted(dep).get(k, 0) == v for k, v in want.items()), timeout=180, interval=1,
               what=f"{total} calls counted once after the broker's restart")
    print(f"\nbroker outage: {len(answers)} answers, {len(refused)} x 503 (Retry-After 5), {len(retried)} bodies "
          f"sent again, {extra} records in Kafka twice, counted once")
