"""`make chaos`: crash, freeze and starve the deployment during a replay, and compare the end state
with a clean run of the same events.

The same fixed event set (the bundled scenario at a fixed start time, so event time is the same in
every run) is replayed into one deployment per scenario (own topic prefix, app id and Redis db on
a stack of its own), in chunks; between chunks, while the workers are busy, the scenario strikes:

    clean2         a second clean run: the same events must give the same records (determinism)
    kill           kill -9 of the worker, 5 times, a new one started each time
    workers2/3     two (three) workers: kill -9 one and start a replacement, SIGSTOP one past the
                   session timeout so its partitions move and SIGCONT it (a zombie: its writes must
                   be fenced), start one more, stop one (SIGTERM), kill -9 the zombie and replace it
    broker         the broker stopped for --outage seconds, then started again
    redis-restart  Redis stopped for --outage seconds (no persistence: it comes back empty)
    redis-freeze   Redis frozen (SIGSTOP) for --outage seconds, then SIGCONT
    kafka-freeze   the broker frozen (SIGSTOP) for --outage seconds, then SIGCONT
    refused-send   the broker refuses every record sent to sla.events, incidents.enriched and duty.events
                   (their max.message.bytes below any batch) until the worker has retried sends
    redis-flush    FLUSHDB during the replay and once more after it
    connector      `zonewatch simulate` publishing through a broker outage
    freezes        (not in the default list; the test's version) Redis, then Kafka frozen in one replay

Per scenario it prints events in, zone counts, lost and duplicated counters in the final zone
state (against the clean run), whether the zone documents, `incidents.enriched` and `zones.state`
(last record per key), the wall's open incidents (zw:incidents) and every unit's latest fix
(zw:unit-info) are equal, and `sla.events` as
exact record sets (its records are deterministic, CONTRACT §3 "Decision time"): lost, extra,
redelivered (identical copies, at-least-once) and retracted breaches (a breach for a call whose
clean-run decision is an arrival within 300 s). A reader follows zw:zone-updates for the whole
run as a wall does: every zone's versions must strictly increase, and at the end the wall must
show every zone at the final clock. Where operators should see something (an outage, a zombie's
fenced writes, a refused send) it prints what the worker's /metrics and log showed.

Every run, the clean one included, is also compared with an in-process reference: the worker's
own flow (streams/testing.py) fed the event set in file order, without transport or faults (zone
documents and sla.events). It tells a fault's effect from a difference the clean run has already.

    python -m bench.chaos [--kills 5] [--minutes 10] [--outage 30] [--scenarios kill,workers2,...]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import re
import signal
import sys
import time
from pathlib import Path

import orjson
from kafka.errors import KafkaError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import WATERMARK_ENV, Deployment, UpdatesReader, frozen, refused_sends, wait_until  # noqa: E402
from connectors.scenario import scenario_events, venue  # noqa: E402
from connectors.scenario.duty import OPERATOR  # noqa: E402
from connectors.scenario.plans import VENUE_GATE_R, VENUE_GATES  # noqa: E402
from contract import keys, metrics, topics  # noqa: E402
from contract.kafka_settings import kafka_python_kwargs  # noqa: E402
from contract.plan import COMMAND_KEY, parse_plan, phase_command  # noqa: E402
from contract.response import DISPATCH_EXACT_M  # noqa: E402
from contract.settings import DEMO_ZONES, Settings  # noqa: E402
from deploy import stack as stack_module  # noqa: E402
from streams.ownership import STALLED  # noqa: E402

START_MS = 1_714_550_400_000  # 2024-05-01T08:00:00Z: a fixed past, so every run has the same event time
PARTITIONS = 4                # of every deployment (and so of patrol.gps)
COUNTERS = ("calls", "alerts")
#: aiokafka's log line when a frozen member resumes and finds its session gone
EXPIRED = STALLED   # a zombie's own line on waking (streams/ownership.py)
ALL_SCENARIOS = ("clean2,kill,workers2,workers3,broker,redis-restart,redis-freeze,kafka-freeze,refused-send,"
                 "redis-flush,connector")
#: a worker frozen this long past the session timeout has certainly been evicted from its groups
ZOMBIE_EXTRA_S = 4.0


# --- the duty plan every `make chaos` run loads (CONTRACT §10; `--no-plan` leaves it out) ---------
#: phases in minutes from START_MS: three schedule boundaries inside the 10-minute event set
CHAOS_PHASES = (("备战", -10, 2), ("临战", 2, 5), ("决战", 5, 8), ("收尾", 8, 20))
#: the operator sets 决战 at 3.5 min (over the schedule's 临战) and returns to the schedule at 6.5 min
OPERATOR_SET_S, OPERATOR_BACK_S = 210, 390
#: the gates' radius: the simulator's GPS noise (3 m a coordinate) carries a unit standing within
#: 3 m of the centre in and out of it, so the gates change status at many fixes (manned, understaffed, empty)
GATE_RADIUS_M = 6
#: street crossings of the venue's patrol grid that are checkpoints (local metres, on venue.STREETS)
CHAOS_CHECKPOINTS = tuple((x, y) for x in (-1300.0, -500.0, 300.0, 1100.0) for y in (-1300.0, -500.0, 300.0, 1100.0))
CHECKPOINT_EVERY_S = {"临战": 150, "决战": 75, "收尾": 100}
#: the interval the simulated sweep is sized for (connectors/scenario/duty.py rides as many units as
#: the plan it is given needs): fewer riders than the worker's plan needs, so checkpoints go overdue
SWEEP_SIZED_FOR_S = 400
#: one fix per patrol.gps partition (units outside every zone) before the first event, published and
#: consumed before the replay starts: every partition has delivered, so each holds the watermark back
#: from the first fix on, as in a deployment whose feeds are running. Without them a partition that has
#: not delivered yet does not hold it (CONTRACT §3) and, with two or three workers, one ingest's first
#: batches pass the watermark over the other's first fixes, which then take effect a moment later
#: (docs/DUTY.md): posts decided a second apart (make chaos, 2 workers, 2026-12-07)
OPENING_UNIT = "CHAOS-OPEN-"
#: one fix per patrol.gps partition at the event set's last ts: every partition has then delivered up
#: to the last instant, so a run's watermark reaches the clock as soon as they are read, as the
#: reference's does at its end (streams/testing.py `finish`), and not only after the idle bound: the
#: last second's duty decisions are made in every run before it is compared
CLOSING_UNIT = "CHAOS-CLOSE-"
PINNED_XY = (20_000.0, 20_000.0)   # where the opening and closing units stand: outside every zone


def chaos_plan(start_ms: int, every_s: dict[str, int] | None = None) -> str:
    """The chaos runs' duty plan as TOML (the venue's gates and SWAT posts, 16 sweep checkpoints, a
    tier rule) for an event set starting at start_ms; `every_s` replaces the checkpoints' intervals."""
    every = every_s or CHECKPOINT_EVERY_S

    def iso(ms: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ms / 1000))

    def table(values: dict[str, int]) -> str:
        return "{ " + ", ".join(f'"{k}" = {v}' for k, v in values.items()) + " }"

    out = ['timezone = "Asia/Shanghai"']
    for name, a, b in CHAOS_PHASES:
        out += ["[[phase]]",
                f'name = "{name}"; from = "{iso(start_ms + a * 60_000)}"; to = "{iso(start_ms + b * 60_000)}"']
    for pid, _name, deg in VENUE_GATES:
        lon, lat = venue.to_lonlat(VENUE_GATE_R * math.cos(math.radians(deg)),
                                   VENUE_GATE_R * math.sin(math.radians(deg)), 6)
        out += ["[[post]]", f'id = "{pid}"; lat = {lat}; lon = {lon}; radius_m = {GATE_RADIUS_M}',
                "required = " + table({"备战": 1, "临战": 2, "决战": 3, "收尾": 1}),
                'force = ["auxiliary", "police", "security"]']
    for k, (x, y) in enumerate(((-40.0, -430.0), (400.0, 260.0)), 1):   # as the demo plan's SWAT posts
        lon, lat = venue.to_lonlat(x, y, 6)
        out += ["[[post]]", f'id = "swat-{k}"; lat = {lat}; lon = {lon}; radius_m = 60',
                "required = " + table({"临战": 2, "决战": 3}), 'force = ["police"]']
    for k, (x, y) in enumerate(CHAOS_CHECKPOINTS, 1):
        lon, lat = venue.to_lonlat(x, y, 6)
        out += ["[[checkpoint]]", f'id = "cp-{k:02d}"; lat = {lat}; lon = {lon}; radius_m = 50',
                "every_s = " + table(every)]
    out += ["[[tiers]]", 'zones = "venue-core"; on_scene = [2, 3, 4]', ""]
    return "\n".join(out)


def event_set(minutes: float, seed: int = 11, plan: bool = False) -> list[tuple[str, dict]]:
    """The replayed events; with `plan`, the duty layer of chaos_plan (units at its posts, a sweep
    past its checkpoints), the operator's two phase commands and the opening fixes first (an
    operator's command is in Kafka before the feeds' watermark reaches its ts, as when it is given
    live: a replay at full speed would otherwise race it, and one read late takes effect later,
    docs/DUTY.md), and the closing fixes last. produce_chunks publishes the first part before the replay."""
    duty = None
    if plan:
        # the simulated sweep sized for SWEEP_SIZED_FOR_S; the worker loads chaos_plan(START_MS)
        duty = parse_plan(chaos_plan(START_MS, {k: SWEEP_SIZED_FOR_S for k in CHECKPOINT_EVERY_S}))
    events = list(scenario_events(seed, units=120, cameras=60, calls_per_min=4.0, alerts_per_min=30.0,
                                  start_ms=START_MS, duration_s=minutes * 60, plan=duty,
                                  phase_after_s=OPERATOR_SET_S))
    if not plan:
        return events
    commands = [ev for t, ev in events if t == topics.PLAN_COMMANDS]
    commands.append(phase_command(f"chaos-{seed}-back", None, OPERATOR, START_MS + OPERATOR_BACK_S * 1000))
    rest = [(t, ev) for t, ev in events if t != topics.PLAN_COMMANDS]
    lon, lat = venue.to_lonlat(*PINNED_XY, 6)

    def pinned(prefix: str, ts: int) -> list[tuple[str, dict]]:
        return [(topics.GPS, {"unit_id": f"{prefix}{p}", "ts": ts, "lat": lat, "lon": lon, "status": "available",
                              "kind": "car", "force": "police"}) for p in range(PARTITIONS)]

    first = min(ev["ts"] for _t, ev in rest)
    return ([(topics.PLAN_COMMANDS, c) for c in commands] + pinned(OPENING_UNIT, first - 1000) + rest
            + pinned(CLOSING_UNIT, final_clock(rest)))


def pinned_partition(topic: str, ev: dict) -> int | None:
    """The patrol.gps partition an opening or closing fix goes to (None: the key's)."""
    uid = ev.get("unit_id") if topic == topics.GPS else None
    for prefix in (OPENING_UNIT, CLOSING_UNIT):
        if isinstance(uid, str) and uid.startswith(prefix):
            return int(uid[len(prefix):])
    return None


def opening(events) -> int:
    """How many events lead the set and are published before the replay: the operator's commands
    and the opening fixes (none without a plan)."""
    n = 0
    for topic, ev in events:
        if not (topic == topics.PLAN_COMMANDS or str(ev.get("unit_id", "")).startswith(OPENING_UNIT)):
            break
        n += 1
    return n


def produce_chunks(dep: Deployment, events, chunks: int, between=None) -> None:
    """Publish in `chunks` slices (topics interleaved as in the file); call `between(i)` after each.
    The opening events (`opening`) go first, and the replay waits until every group has consumed them."""
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=dep.settings.kafka, acks="all", linger_ms=5,
                         retries=2**31 - 1, max_in_flight_requests_per_connection=1,
                         **kafka_python_kwargs(dep.settings))

    def send(part) -> None:
        for topic, ev in part:
            prod.send(dep.settings.topic(topic), orjson.dumps(ev), key=message_key(topic, ev),
                      partition=pinned_partition(topic, ev))
        prod.flush()

    n_open = opening(events)
    if n_open:
        send(events[:n_open])
        events = events[n_open:]

        def consumed() -> bool:
            try:
                return group_lag(dep) == 0
            except KafkaError:   # a group coordinator not ready yet: ask again
                return False
        wait_until(consumed, timeout=180, interval=0.5, what="the opening events consumed")
    size = max(1, -(-len(events) // chunks))
    for i in range(0, len(events), size):
        send(events[i:i + size])
        if between is not None:
            between(i // size)
    prod.close()


def message_key(topic: str, ev: dict) -> bytes | None:
    """The key a producer gives the record (an operator's command: "phase", as the gateway's)."""
    if topic == topics.PLAN_COMMANDS:
        return COMMAND_KEY.encode()
    return str(ev.get(topics.KEY_FIELD[topic], "")).encode() or None


def group_lag(dep: Deployment) -> int:
    """Messages not yet committed by the ingest and the Faust groups (0 when all is processed)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    kw = kafka_python_kwargs(dep.settings)
    admin = KafkaAdminClient(bootstrap_servers=dep.settings.kafka, **kw)
    consumer = KafkaConsumer(bootstrap_servers=dep.settings.kafka, **kw)
    try:
        lag = 0
        groups = {f"{dep.settings.app_id}-ingest": [dep.settings.topic(t)
                                                    for t in (*topics.INPUT_TOPICS, topics.PLAN_COMMANDS)],
                  dep.settings.app_id: [dep.settings.internal_zone_events]}
        for group, names in groups.items():
            committed = admin.list_group_offsets(group)
            committed = committed.get(group, committed)  # kafka-python 3 nests by group id
            tps = [TopicPartition(t, p) for t in names for p in (consumer.partitions_for_topic(t) or ())]
            ends = consumer.end_offsets(tps)
            for tp in tps:
                c = committed.get(tp)
                off = getattr(c, "offset", c) if c is not None else 0
                lag += max(0, ends[tp] - (off if off and off > 0 else 0))
        return lag
    finally:
        consumer.close()
        admin.close()


#: The watermark's idle bound in these deployments: above every stall the scenarios cause (30 s
#: outages, a worker frozen past its session timeout, takeovers), so that a scenario is held to the
#: clean run's decisions. With the harness's 12 s a stalled patrol.gps partition stops holding the
#: watermark back, as CONTRACT §3 intends, and recommendations are decided without its fixes
#: (2 and 3 workers and Kafka frozen differed from the clean run that way, 2026-11-30).
CHAOS_IDLE_MS = 60_000
#: `--bounds`: the watermark's bounds a run uses. "harness": the idle bound above and the replays' max lag
#: (bench/harness.py WATERMARK_ENV); "contract": the contract's defaults (idle 30 s, max lag 60 s), what an
#: operator gets without setting either (docs/OPERATIONS.md says where they differ and what to set).
BOUNDS = {
    "harness": {"ZONEWATCH_WATERMARK_IDLE_MS": str(CHAOS_IDLE_MS),
                "ZONEWATCH_WATERMARK_MAX_LAG_MS": WATERMARK_ENV["ZONEWATCH_WATERMARK_MAX_LAG_MS"]},
    "contract": {"ZONEWATCH_WATERMARK_IDLE_MS": "30000", "ZONEWATCH_WATERMARK_MAX_LAG_MS": "60000"},
}


def final_clock(events) -> int:
    return max(ev["ts"] for _t, ev in events if isinstance(ev, dict) and isinstance(ev.get("ts"), int))


def settle(dep: Deployment, clock: int, timeout: float = 300) -> dict:
    """Wait until everything is consumed and committed and every zone shows the final clock."""
    why = {}

    def done():
        why.clear()
        docs = dep.zone_docs()
        behind = sorted(z for z, d in docs.items() if d["clock"] != clock)
        if not docs or behind:
            why["zones"] = f"{len(docs)} docs, behind the final clock {clock}: {behind[:5]}"
            return None
        try:
            lag = group_lag(dep)
        except KafkaError as exc:  # a broker just thawed or restarted: coordinators move, ask again
            why["lag"] = f"committed offsets not readable yet: {exc!r}"
            return None
        if lag != 0:
            why["lag"] = f"uncommitted messages: {lag}"
            return None
        return docs

    try:
        wait_until(done, timeout=timeout, interval=1.0, what="final state")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {why}") from None
    time.sleep(2.0)  # a last flush after the final commit
    return wait_until(done, timeout=60, interval=1.0, what="final state (stable)")


def sla_record(e: dict) -> tuple:
    """One sla.events record as a comparable value (CONTRACT §4: every field). A `tiers` record (v3)
    has its counts and `met` where the others have the unit and the response time."""
    if e["type"] == "tiers":
        on_scene = tuple(sorted(e["on_scene"].items()))
        return (e["type"], e["call_id"], on_scene, e["met"], e["ts"], tuple(e["zone_ids"]))
    return (e["type"], e["call_id"], e["unit_id"], e["response_s"], e["ts"], tuple(e["zone_ids"]))


def flipped(sla: set) -> list[str]:
    """Calls with a breach and an arrival within 300 s in the same record set: a breach a later
    record contradicts (CONTRACT §3: a breach is final, so this never happens)."""
    breached = {r[1] for r in sla if r[0] == "breach"}
    return sorted({r[1] for r in sla if r[0] == "arrived" and r[3] <= 300 and r[1] in breached})


def retracted(clean_sla: set, run_sla: set) -> list[str]:
    """Breaches of this run for calls whose clean-run decision is an arrival within 300 s."""
    met = {r[1] for r in clean_sla if r[0] == "arrived" and r[3] <= 300}
    return sorted({r[1] for r in run_sla if r[0] == "breach" and r[1] in met})


def duty_record(e: dict) -> tuple:
    """One duty.events record as a comparable value (CONTRACT §10: every field)."""
    return tuple(sorted(e.items()))


def duty_decision(r: tuple) -> tuple:
    """What a duty.events record decides about: its type, its post, checkpoint (and unit for a visit)
    or the phase, and its instant. Two different records with the same decision contradict each other."""
    e = dict(r)
    return (e["type"], e.get("post_id") or e.get("checkpoint_id") or "phase", e.get("unit_id"), e["ts"])


def duty_retracted(clean_duty: set, run_duty: set) -> list[tuple]:
    """This run's duty decisions that the clean run made otherwise: a record with the decision of a
    clean-run record (type, point, ts) and other content (another status, count or phase)."""
    clean = {duty_decision(r): r for r in clean_duty}
    return sorted({duty_decision(r) for r in run_duty if duty_decision(r) in clean and clean[duty_decision(r)] != r},
                  key=repr)


def duty_flipped(duty: set) -> list[str]:
    """Contradictions inside one run's duty.events (each record is final, CONTRACT §10): two different
    records of the same decision, and post or phase records whose `previous` is not the status or
    phase of the one before (a change emitted, then decided otherwise)."""
    out = []
    seen: dict[tuple, tuple] = {}
    for r in sorted(duty, key=repr):
        d = duty_decision(r)
        if d in seen:
            out.append(f"{d}: {dict(seen[d])} and {dict(r)}")
        seen[d] = r
    chains: dict[str, list[dict]] = {}
    for r in duty:
        e = dict(r)
        if e["type"] in ("post_status", "phase"):
            chains.setdefault(e.get("post_id") or "phase", []).append(e)
    for point, recs in sorted(chains.items()):
        before = "off" if point != "phase" else None
        for e in sorted(recs, key=lambda e: e["ts"]):
            if e["previous"] != before:
                out.append(f"{point} at {e['ts']}: previous {e['previous']!r}, the record before says {before!r}")
            before = e["status"] if point != "phase" else e["name"]
    return out


def duty_kinds(duty: set) -> str:
    """duty.events records by kind, for the report: post_status by status, the others by type."""
    counts: dict[str, int] = {}
    for r in duty:
        e = dict(r)
        kind = f"post {e['status']}" if e["type"] == "post_status" else e["type"]
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def duty_documents(dep: Deployment) -> dict:
    """zw:post:{id}, zw:checkpoint:{id} (every id in zw:posts / zw:checkpoints) and zw:phase, without
    their versions (a run's versions count its writes)."""
    out: dict[str, dict] = {}
    for index, key_of, kind in ((keys.POSTS, keys.post, "post"), (keys.CHECKPOINTS, keys.checkpoint, "checkpoint")):
        for pid in sorted(m.decode() for m in dep.redis.smembers(index)):
            raw = dep.redis.get(key_of(pid))
            out[f"{kind}:{pid}"] = {k: v for k, v in orjson.loads(raw).items() if k != "version"} if raw else {}
    raw = dep.redis.get(keys.PHASE)
    if raw is not None:
        out["phase"] = {k: v for k, v in orjson.loads(raw).items() if k != "version"}
    return out


def snapshot(dep: Deployment, docs: dict, reader: UpdatesReader | None = None) -> dict:
    """What must be equal to the clean run: zone documents, the output topics, the wall's list;
    and, when a reader followed zw:zone-updates, whether its versions only increased."""
    sla_raw = [sla_record(orjson.loads(m.value)) for m in dep.read_topic(topics.SLA)]
    enriched_raw = dep.read_topic(topics.INCIDENTS)
    enriched = {}
    for m in enriched_raw:
        rec = orjson.loads(m.value)
        # processing time is not an event-time fact, nor are the recommended units beyond
        # DISPATCH_EXACT_M (positions at processing time, from Redis); those within it are
        rec.pop("processed_at", None)
        rec["nearest_units"] = [u for u in rec["nearest_units"] if u["distance_m"] <= DISPATCH_EXACT_M]
        enriched[m.key.decode()] = rec
    wall = {}
    for cid, js in dep.redis.hgetall(keys.INCIDENTS).items():
        d = orjson.loads(js)
        wall[cid.decode()] = (d["status"], d["ts"], tuple(d["zones"]), d["breach_at"], d["priority"])
    units = {}  # the latest fix of every unit (ingest writes it; dispatch reads it)
    for uid, js in dep.redis.hgetall(keys.UNIT_INFO).items():
        d = orjson.loads(js)
        units[uid.decode()] = (d["ts"], d["status"], d["kind"], d["lat"], d["lon"])
    zstate = {}
    for m in dep.read_topic(topics.ZONES_STATE):
        doc = orjson.loads(m.value)
        doc.pop("version", None)
        zstate[m.key.decode()] = doc
    duty_raw = [duty_record(orjson.loads(m.value)) for m in dep.read_topic(topics.DUTY)]
    out = {
        "docs": {z: {k: v for k, v in d.items() if k != "version"} for z, d in docs.items()},
        "sla": set(sla_raw), "sla_redelivered": len(sla_raw) - len(set(sla_raw)),
        "duty": set(duty_raw), "duty_redelivered": len(duty_raw) - len(set(duty_raw)),
        "duty_docs": duty_documents(dep),
        "enriched": enriched, "enriched_redelivered": len(enriched_raw) - len(enriched),
        "zones_state": zstate, "wall": wall, "units": units,
    }
    if reader is not None:
        reader.catch_up()
        clock = max(d["clock"] for d in docs.values())
        out["versions"] = {"entries": reader.entries, "zones": len(reader.versions),
                           "problems": reader.problems(), "repeats": reader.repeats,
                           "frozen": reader.frozen(docs, clock), "read_errors": reader.errors}
    return out


def reference(events, partitions: int = PARTITIONS, plan: Path | None = None) -> dict:
    """The worker's own flow in-process (streams/testing.py), fed the event set in file order with
    no transport and no faults: the zone documents and sla.events the runs should have. Wall time
    is simulated, so the watermark only moves with the data, and at the end the feeds go quiet."""
    from streams.testing import Msg, Pipeline

    s = Settings(zones=DEMO_ZONES, partitions=partitions, caller_secret="test-secret", plan=plan)
    pipe = Pipeline(s, wall0=int(time.time() * 1000))  # after the events' ts: none is in the future
    pipe.feed([Msg(s.topic(t), 0, i, message_key(t, ev), orjson.dumps(ev), ev["ts"])
               for i, (t, ev) in enumerate(events)], batch=50)
    pipe.finish()
    nearest = {}   # the last record's recommendation per call (no Redis here: the exact part only)
    for rec in pipe.enriched:
        nearest[rec["call_id"]] = rec["nearest_units"]
    return {"docs": {z: {k: v for k, v in d.items() if k != "version"} for z, d in pipe.documents().items()},
            "sla": {sla_record(e) for e in pipe.sla}, "nearest": nearest,
            "duty": {duty_record(e) for e in pipe.duty}, "duty_docs": reference_duty_documents(pipe)}


def reference_duty_documents(pipe) -> dict:
    """The reference's duty documents keyed as duty_documents() keys Redis's (none without a plan)."""
    posts, cps, phase = pipe.duty_documents()
    out = {f"post:{k}": v for k, v in posts.items()} | {f"checkpoint:{k}": v for k, v in cps.items()}
    if phase is not None:
        out["phase"] = phase
    return out


def dump(path: Path, snap: dict) -> None:
    """A run's snapshot as JSON, for finding the first difference by hand."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(snap, default=lambda o: sorted(o, key=repr) if isinstance(o, set) else str(o),
                                  option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def _flat_counts(docs: dict) -> dict:
    out = {}
    for z, d in docs.items():
        for name in COUNTERS:
            out[(z, "today", name)] = d["today"][name]
        for w, body in d["windows"].items():
            out[(z, w, "calls")] = body["calls"]
            out[(z, w, "alerts")] = body["alerts"]
        for k, v in d["response"].items():
            if isinstance(v, int) and k not in ("p50_s", "p90_s"):
                out[(z, "response", k)] = v
        out[(z, "units", "present")] = d["units"]["present"]
        out[(z, "open_incidents", "")] = d["open_incidents"]
    return out


def _first_difference(a: dict, b: dict, name: str = "clean") -> str | None:
    """Where two last-record-per-key maps differ first (`a` is the clean run or the reference)."""
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key), b.get(key)
        if ra != rb:
            if ra is None or rb is None:
                return f"{key}: only in {name if rb is None else 'this run'}"
            fields = sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))
            return f"{key}: " + "; ".join(f"{f}: {name} {ra.get(f)!r} vs {rb.get(f)!r}" for f in fields)[:400]
    return None


def compare(clean: dict, run: dict, ref: dict | None = None) -> dict:
    """`run` against the clean run, and against the in-process reference when given."""
    a, b = _flat_counts(clean["docs"]), _flat_counts(run["docs"])
    lost = sum(max(0, a[k] - b.get(k, 0)) for k in a)
    dup = sum(max(0, b.get(k, 0) - a[k]) for k in a)
    out = {
        "counters": len(a),
        "events_counted": sum(v for k, v in b.items() if k[1] == "today"),
        "events_expected": sum(v for k, v in a.items() if k[1] == "today"),
        "lost": lost, "duplicated": dup,
        "docs_equal": clean["docs"] == run["docs"],
        "docs_difference": _first_difference(clean["docs"], run["docs"]),
        "sla_records": len(run["sla"]),
        "sla_lost": len(clean["sla"] - run["sla"]), "sla_extra": len(run["sla"] - clean["sla"]),
        "sla_redelivered": run["sla_redelivered"],
        "sla_retracted": retracted(clean["sla"], run["sla"]), "sla_flipped": flipped(run["sla"]),
        "enriched_equal": clean["enriched"] == run["enriched"],
        "enriched_difference": _first_difference(clean["enriched"], run["enriched"]),
        "enriched_redelivered": run["enriched_redelivered"],
        "zones_state_equal": run["zones_state"] == run["docs"],
        "wall_equal": clean["wall"] == run["wall"], "wall_open": len(run["wall"]),
        "units_equal": clean["units"] == run["units"],
        "units_difference": _first_difference({u: {"fix": f} for u, f in clean["units"].items()},
                                              {u: {"fix": f} for u, f in run["units"].items()}),
        "versions": run.get("versions"),
        "duty_records": len(run["duty"]),
        "duty_lost": sorted(clean["duty"] - run["duty"], key=repr),
        "duty_extra": sorted(run["duty"] - clean["duty"], key=repr),
        "duty_redelivered": run["duty_redelivered"],
        "duty_retracted": duty_retracted(clean["duty"], run["duty"]), "duty_flipped": duty_flipped(run["duty"]),
        "duty_docs_equal": clean["duty_docs"] == run["duty_docs"],
        "duty_docs_difference": _first_difference(clean["duty_docs"], run["duty_docs"]),
    }
    if ref is not None:
        out["ref_docs_equal"] = ref["docs"] == run["docs"]
        out["ref_docs_difference"] = _first_difference(ref["docs"], run["docs"], "reference")
        out["ref_sla_lost"] = sorted(ref["sla"] - run["sla"])
        out["ref_sla_extra"] = sorted(run["sla"] - ref["sla"])
        # the recommendations within DISPATCH_EXACT_M: positions as of each call's ts
        out["ref_nearest_equal"] = ref["nearest"] == {c: r["nearest_units"] for c, r in run["enriched"].items()}
        out["ref_duty_lost"] = sorted(ref["duty"] - run["duty"], key=repr)
        out["ref_duty_extra"] = sorted(run["duty"] - ref["duty"], key=repr)
        out["ref_duty_docs_equal"] = ref["duty_docs"] == run["duty_docs"]
        out["ref_duty_docs_difference"] = _first_difference(ref["duty_docs"], run["duty_docs"], "reference")
    v = out["versions"]
    out["ok"] = bool(
        out["events_counted"] == out["events_expected"] > 0 and not lost and not dup and out["docs_equal"]
        and not out["sla_lost"] and not out["sla_extra"] and not out["sla_retracted"] and not out["sla_flipped"]
        and out["enriched_equal"] and out["zones_state_equal"] and out["wall_equal"] and out["units_equal"]
        and not out["duty_lost"] and not out["duty_extra"] and not out["duty_retracted"] and not out["duty_flipped"]
        and out["duty_docs_equal"]
        and (v is None or (not v["problems"] and not v["frozen"]))
        and run.get("seen", {}).get("ok", True)
        and (ref is None or (out["ref_docs_equal"] and not out["ref_sla_lost"] and not out["ref_sla_extra"]
                             and out["ref_nearest_equal"] and not out["ref_duty_lost"] and not out["ref_duty_extra"]
                             and out["ref_duty_docs_equal"])))
    return out


class Chaos:
    def __init__(self, stack: dict, state_dir: Path, partitions: int = PARTITIONS, seed: int = 5,
                 bounds: str = "harness", plan: Path | None = None):
        self.stack = stack
        self.plan = plan   # the duty plan file every deployment loads (ZONEWATCH_PLAN), or None
        self.bounds = BOUNDS[bounds]
        self.state_dir = state_dir
        self.partitions = partitions
        self.rng = random.Random(seed)
        self.outage_s = 30.0
        self.ref: dict | None = None   # reference(events), for whoever compares
        self.say = lambda msg: print(f"  {msg}", flush=True)

    @contextlib.contextmanager
    def running(self, name: str, workers: int = 1, joined: bool = True):
        """A fresh deployment with `workers` workers (members of their groups unless `joined` is
        false) and a reader of zw:zone-updates; workers stopped and Redis db flushed on leaving."""
        dep = Deployment(self.stack, DEMO_ZONES, self.partitions, name=f"{name}-{os.getpid()}")
        dep.env.update(self.bounds)
        if self.plan is not None:
            dep.env["ZONEWATCH_PLAN"] = str(self.plan)
        reader = dep.reader = UpdatesReader(dep)
        reader.start()
        try:
            for _ in range(workers):
                dep.start_worker()
            if joined:
                dep.wait_workers_joined()
            yield dep
        finally:
            try:
                reader.stop()
            finally:
                dep.close()

    def finish(self, dep: Deployment, events) -> dict:
        snap = snapshot(dep, settle(dep, final_clock(events)), dep.reader)
        snap["log_errors"] = log_errors(dep)
        snap["takeovers"] = dep.takeovers()
        snap["logs"] = [str(log) for _c, _p, log in dep.workers]
        dump(self.state_dir / "runs" / f"{dep.settings.app_id}.json", snap)
        return snap

    def clean(self, events, name: str = "clean") -> dict:
        with self.running(name, joined=False) as dep:
            produce_chunks(dep, events, 1)
            return self.finish(dep, events)

    def kills(self, events, kills: int) -> dict:
        with self.running("kill") as dep:
            def between(i):
                if i < kills:
                    time.sleep(self.rng.uniform(0.05, 1.5))  # somewhere in the processing of the chunk
                    dep.kill_worker(len(dep.workers) - 1, signal.SIGKILL)
                    dep.start_worker()
                    worker_ready(dep)  # the next kill hits a worker that is processing
            produce_chunks(dep, events, kills + 1, between)
            return self.finish(dep, events)

    # -- several workers: kills, rebalances and a zombie ----------------------------------------
    def workers(self, events, n: int) -> dict:
        """`n` workers; between chunks: kill -9 one and start a replacement; freeze one (SIGSTOP)
        past the session timeout; once its partitions are taken over, resume it (a zombie: what it
        still writes must be refused); start one more; stop one (SIGTERM); read the zombie's
        fenced writes, kill -9 it and start a replacement. Partitions move at every step while
        the replay goes on."""
        with self.running(f"workers{n}", workers=n) as dep:
            zombie: dict = {}
            session_s = dep.settings.session_timeout_ms / 1000.0

            def kill_one():
                i = self.rng.choice(dep.live())
                dep.kill_worker(i, signal.SIGKILL)
                dep.start_worker()
                self.say(f"kill -9 worker {i}; worker {len(dep.workers) - 1} started")

            def freeze_one():
                i = dep.live()[0]  # the oldest: it holds partitions
                time.sleep(self.rng.uniform(0.0, 0.2))  # while it has applied but not yet written
                zombie.update(index=i, lines=len(dep.takeovers()), t=time.monotonic())
                dep.pause_worker(i)
                self.say(f"SIGSTOP worker {i} (session timeout {session_s:.0f} s)")

            def thaw():
                i = zombie["index"]
                # evicted (its groups are stable without it) and every partition taken over by
                # the others since it froze: from now on anything it writes is stale
                dep.wait_workers_joined(timeout=120)
                wait_until(lambda: {p for w, p, _s, _g in dep.takeovers()[zombie["lines"]:] if w != i}
                           == set(range(self.partitions)), timeout=120, interval=0.5,
                           what="the frozen worker's partitions taken over")
                wait_until(lambda: time.monotonic() - zombie["t"] > session_s + ZOMBIE_EXTRA_S, timeout=60)
                zombie["frozen_s"] = time.monotonic() - zombie["t"]
                dep.resume_worker(i)
                self.say(f"SIGCONT worker {i} after {zombie['frozen_s']:.1f} s: its partitions had moved")

            def scale_out():
                dep.start_worker()
                self.say(f"worker {len(dep.workers) - 1} started (scale out)")

            def leave():
                i = [j for j in dep.live() if j != zombie["index"]][0]
                dep.kill_worker(i, signal.SIGTERM)
                self.say(f"SIGTERM worker {i} (it leaves its groups)")

            def kill_zombie():
                i = zombie["index"]
                # what the zombie saw after SIGCONT: its stale flushes refused by the fence
                if dep.workers[i][0].poll() is None:
                    with contextlib.suppress(AssertionError):  # reported below either way
                        wait_until(lambda: (dep.worker_metric(i, metrics.FENCED) or 0) > 0
                                   or "(fenced)" in dep.worker_log(i) or EXPIRED in dep.worker_log(i),
                                   timeout=60, interval=0.5, what="the zombie's fenced writes or expulsion")
                zombie["fenced"] = dep.worker_metric(i, metrics.FENCED)
                zombie["fenced_lines"] = [ln for ln in dep.worker_log(i).splitlines() if "(fenced)" in ln]
                zombie["expired_lines"] = [ln for ln in dep.worker_log(i).splitlines() if EXPIRED in ln]
                dep.kill_worker(i, signal.SIGKILL)
                dep.start_worker()
                self.say(f"kill -9 worker {i} (the zombie); worker {len(dep.workers) - 1} started")

            plan = [kill_one, freeze_one, thaw, scale_out, leave, kill_zombie]

            def between(i):
                if i < len(plan):
                    if plan[i] is not freeze_one:
                        time.sleep(self.rng.uniform(0.05, 1.0))  # while the workers are busy with the chunk
                    plan[i]()

            produce_chunks(dep, events, len(plan) + 1, between)
            snap = self.finish(dep, events)
            # A zombie either flushes before it learns it was expelled (the fence refuses the write)
            # or learns it first (its heartbeat fails on SIGCONT and it drops its partitions without
            # writing): which one is a race of its own timers. Either way it must show; that no stale
            # write landed is checked by the versions and documents above.
            fenced_n = zombie.get("fenced") or 0
            line = zombie["fenced_lines"][0] if zombie.get("fenced_lines") else None
            expired = zombie["expired_lines"][0] if zombie.get("expired_lines") else None
            snap["seen"] = {
                "ok": fenced_n > 0 or line is not None or expired is not None,
                "text": f"zombie (worker {zombie['index']}, frozen {zombie.get('frozen_s', 0):.1f} s): "
                        f"{metrics.FENCED} {fenced_n if fenced_n is not None else 'unreadable'}; log: "
                        + (repr(line[line.index('partitions'):][:110]) if line
                           else "no fenced write; expelled first: " + repr(expired[expired.index(EXPIRED):][:80])
                           if expired else "no fenced write, no expulsion logged"),
            }
            return snap

    # -- dependencies down, frozen, refusing ------------------------------------------------------
    def broker_restart(self, events) -> dict:
        return self._outage(events, "broker", [("kafka", self._restart)])

    def redis_restart(self, events, flush: bool) -> dict:
        if not flush:
            return self._outage(events, "redisrestart", [("redis", self._restart)])
        with self.running("redisflush") as dep:
            def between(i):
                if i == 1:
                    time.sleep(self.rng.uniform(0.05, 1.0))  # while the worker is busy with the chunks
                    dep.redis.flushdb()
            produce_chunks(dep, events, 3, between)
            settle(dep, final_clock(events))
            dep.redis.flushdb()  # once more after the end: restored without any new input
            time.sleep(3.0)
            return self.finish(dep, events)

    def freeze(self, events, *services: str) -> dict:
        """Each of `services` (kafka | redis) frozen with SIGSTOP for `outage_s`, then SIGCONT,
        one after the other, each while the worker is busy with a chunk."""
        return self._outage(events, "freeze" + "".join(services), [(s, self._freeze) for s in services])

    def _outage(self, events, name: str, faults) -> dict:
        """Each (service, fault) of `faults` in turn, `fault(service, during)` while the worker is
        busy with a chunk (the first after the first chunk); the worker's dependency gauge is
        scraped every 0.5 s of each outage, and the snapshot tells what operators saw of it."""
        with self.running(name) as dep:
            during: dict = {}

            def between(i):
                if 1 <= i <= len(faults):
                    service, fault = faults[i - 1]
                    time.sleep(self.rng.uniform(0.05, 1.0))  # while the worker is busy with the chunks
                    gauge = during.setdefault(service, [])
                    fault(service, lambda t: gauge.append((t, worker_gauge(dep, service))))
            produce_chunks(dep, events, len(faults) + 2, between)
            snap = self.finish(dep, events)
            seen = [outage_seen(dep, service, during.get(service, [])) for service, _f in faults]
            snap["seen"] = {"ok": all(x["ok"] for x in seen), "text": "\n    ".join(x["text"] for x in seen)}
            return snap

    def refused_send(self, events) -> dict:
        """The broker refuses every record sent to sla.events, incidents.enriched and duty.events from
        while the worker is busy with the first chunk until it has retried refused sends for a while
        (the second chunk is published meanwhile); then it accepts them again."""
        with self.running("refused") as dep, contextlib.ExitStack() as refusing:
            seen: dict = {}

            def between(i):
                if i == 0:
                    time.sleep(self.rng.uniform(0.05, 0.5))
                    refusing.enter_context(refused_sends(dep, (topics.SLA, topics.INCIDENTS, topics.DUTY)))
                    seen["t"] = time.monotonic()
                    self.say("the broker refuses records for sla.events, incidents.enriched and duty.events")
                elif i == 1:
                    wait_until(lambda: (dep.worker_metric(-1, metrics.OUTPUT_RETRIES) or 0) > 0, timeout=120,
                               interval=0.5, what="a refused output send")
                    time.sleep(5.0)  # more records refused, and retries with a longer backoff
                    seen["during"] = dep.worker_metric(-1, metrics.OUTPUT_RETRIES)
                    refusing.close()
                    self.say(f"accepted again after {time.monotonic() - seen['t']:.1f} s")
            produce_chunks(dep, events, 3, between)
            snap = self.finish(dep, events)
            retries = dep.worker_metric(-1, metrics.OUTPUT_RETRIES)
            errors = dep.worker_metric(-1, metrics.OUTPUT_ERRORS)
            line = next((ln for ln in dep.worker_log(-1).splitlines() if "Kafka refused" in ln), None)
            snap["seen"] = {
                "ok": bool(retries) and line is not None,
                "text": f"{metrics.OUTPUT_RETRIES} {retries:.0f} ({metrics.OUTPUT_ERRORS} {errors:.0f}); log: "
                        + (repr(line[line.index('Kafka refused'):][:120]) if line else "MISSING"),
            }
            return snap

    def connector_outage(self) -> dict:
        """`zonewatch simulate` publishing while the broker is down for `outage_s`: it must buffer
        (or fail loudly); every event it reports as sent must be in Kafka exactly once."""
        import subprocess

        from kafka import KafkaConsumer, TopicPartition

        from contract.kafka_settings import ensure_topics
        from contract.settings import Settings

        prefix = f"conn-{os.getpid()}."
        s = Settings(kafka=self.stack["kafka"], topic_prefix=prefix, app_id=f"conn-{os.getpid()}")
        ensure_topics(s)
        env = dict(os.environ, ZONEWATCH_KAFKA=self.stack["kafka"], ZONEWATCH_TOPIC_PREFIX=prefix)
        sim = subprocess.Popen([sys.executable, "-m", "zonewatch.cli", "simulate", "--speed", "30",
                                "--duration", str(int(30 * (self.outage_s + 25))), "--units", "60",
                                "--cameras", "20", "--seed", "3"], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(8)
        self._restart("kafka")
        out, _ = sim.communicate(timeout=900)
        done = [line for line in out.splitlines() if line.startswith("done:")]
        sent = sum(int(n.replace(",", "")) for n in re.findall(r"\.\S+ ([\d,]+)", done[-1])) if done else 0
        consumer = KafkaConsumer(bootstrap_servers=self.stack["kafka"], **kafka_python_kwargs(s))
        tps = [TopicPartition(s.topic(t), p) for t in topics.INPUT_TOPICS
               for p in (consumer.partitions_for_topic(s.topic(t)) or ())]
        in_kafka = sum(consumer.end_offsets(tps).values())
        consumer.close()
        return {"exit_code": sim.returncode, "sent": sent, "in_kafka": in_kafka,
                "outage_logged": "Unable connect" in out or "Connect call failed" in out}

    def _outage_for(self, during) -> float:
        """`self.outage_s` seconds (a scrape may add up to its 3 s timeout), calling
        `during(seconds since the start)` every 0.5 s; the seconds it took."""
        t0 = time.monotonic()
        while (left := self.outage_s - (time.monotonic() - t0)) > 0:
            time.sleep(min(0.5, left))
            if during is not None:
                during(time.monotonic() - t0)
        return time.monotonic() - t0

    def _restart(self, name: str, during=None) -> None:
        """Stop a server, keep it down for `self.outage_s` (calling `during`), start it again."""
        stack_module.stop_service(name, self.state_dir)
        self.say(f"{name} down for {self.outage_s:.0f} s")
        self._outage_for(during)
        kport = int(self.stack["kafka"].rsplit(":", 1)[1])
        rport = int(self.stack["redis"].rsplit(":", 1)[1].split("/")[0])
        stack_module.up(kafka_port=kport, redis_port=rport, state_dir=self.state_dir)

    def _freeze(self, name: str, during=None) -> None:
        """SIGSTOP a server for `self.outage_s` (calling `during`), then SIGCONT."""
        with frozen(self.state_dir, name) as pid:
            self.say(f"{name} (pid {pid}) frozen (SIGSTOP) for {self.outage_s:.0f} s")
            took = self._outage_for(during)
        self.say(f"{name} resumed (SIGCONT) after {took:.1f} s")


def worker_ready(dep: Deployment, timeout: float = 120) -> None:
    """Wait until the newest worker has joined its group and started (Faust logs "Worker]: Ready")."""
    log = dep.workers[-1][2]
    wait_until(lambda: "Worker]: Ready" in log.read_text(errors="replace"), timeout=timeout,
               what="the restarted worker ready")


def worker_gauge(dep: Deployment, dependency: str) -> float | None:
    """The newest worker's zonewatch_dependency_up for `dependency` (None: /metrics did not answer)."""
    got = dep.worker_metric(-1, metrics.DEPENDENCY_UP, by="dependency")
    return None if got is None else got.get(dependency)


def outage_seen(dep: Deployment, dependency: str, samples) -> dict:
    """What an operator saw of an outage: the gauge during it ((seconds into it, value) samples;
    it must have gone to 0), the counter and log lines after."""
    what = {"kafka": "Kafka", "redis": "Redis"}[dependency]
    zero = next((t for t, v in samples if v == 0), None)
    up_during = (f"0 from {zero:.1f} s into it" if zero is not None
                 else "never 0 (" + ", ".join(sorted({str(v) for _t, v in samples})) + ")")
    outages = (dep.worker_metric(-1, metrics.DEPENDENCY_OUTAGES, by="dependency") or {}).get(dependency, 0)
    up_after = worker_gauge(dep, dependency)
    log = dep.worker_log(-1).splitlines()
    down_line = next((ln for ln in log if f"{what} unreachable" in ln), None)
    back_line = next((ln for ln in log if f"{what} reachable again" in ln), None)
    ok = zero is not None and up_after == 1 and outages >= 1 and down_line is not None and back_line is not None
    short = lambda ln: ln[ln.index(what):][:110] if ln else "MISSING"  # noqa: E731
    return {"ok": ok, "text": f'{metrics.DEPENDENCY_UP}{{dependency="{dependency}"}} during {up_during}, '
                              f"after {up_after}; outages_total {outages:.0f}; log: {short(down_line)!r} / "
                              f"{short(back_line)!r}"}


def log_errors(dep: Deployment) -> list[str]:
    """ERROR/CRITICAL lines and tracebacks in the deployment's worker logs (for the report)."""
    out = []
    for i in range(len(dep.workers)):
        for ln in dep.worker_log(i).splitlines():
            if "ERROR" in ln or "CRITICAL" in ln or ln.startswith("Traceback"):
                out.append(f"worker {i}: {ln.strip()[:200]}")
    return out


def report_line(name: str, n_in: int, cmp: dict) -> str:
    line = (f"{name:<16} events in {n_in:>6}  zone counts {cmp['events_counted']:>6}/{cmp['events_expected']:<6} "
            f"lost {cmp['lost']}  duplicated {cmp['duplicated']}  zone docs equal {cmp['docs_equal']}  "
            f"sla.events {cmp['sla_records']} records: lost {cmp['sla_lost']} extra {cmp['sla_extra']} "
            f"retracted breaches {len(cmp['sla_retracted'])} (redelivered {cmp['sla_redelivered']})  "
            f"enriched equal {cmp['enriched_equal']} (redelivered {cmp['enriched_redelivered']})  "
            f"zones.state = Redis {cmp['zones_state_equal']}  "
            f"wall incidents equal {cmp['wall_equal']} ({cmp['wall_open']} open)  "
            f"unit positions equal {cmp['units_equal']}\n"
            f"{'':<16} duty.events {cmp['duty_records']} records: lost {len(cmp['duty_lost'])} extra "
            f"{len(cmp['duty_extra'])} retracted {len(cmp['duty_retracted'])} contradicted {len(cmp['duty_flipped'])} "
            f"(redelivered {cmp['duty_redelivered']})  posts/checkpoints/phase in Redis equal {cmp['duty_docs_equal']}")
    if "ref_docs_equal" in cmp:
        line += (f"\n{'':<16} against the in-process reference: zone docs equal {cmp['ref_docs_equal']}, sla.events "
                 f"lost {len(cmp['ref_sla_lost'])} extra {len(cmp['ref_sla_extra'])}, recommendations within "
                 f"2,077 m equal {cmp['ref_nearest_equal']}, duty.events lost {len(cmp['ref_duty_lost'])} extra "
                 f"{len(cmp['ref_duty_extra'])}, posts/checkpoints/phase equal {cmp['ref_duty_docs_equal']}")
    v = cmp.get("versions")
    if v is not None:
        line += (f"\n{'':<16} {keys.ZONE_UPDATES}: {v['entries']} updates of {v['zones']} zones, versions not "
                 f"increasing {len(v['problems'])}, zones frozen on the wall {len(v['frozen'])}")
    return line


def details(clean: dict, run: dict, cmp: dict) -> list[str]:
    """The first differences and what operators saw, for the report."""
    out = []
    for label, decs in (("only in this run", run["sla"] - clean["sla"]),
                        ("only in clean run", clean["sla"] - run["sla"])):
        for typ, call_id, unit, resp, ts, _zones in sorted(decs, key=lambda r: (r[1], r[0]))[:5]:
            other = sorted(r for r in (clean if label == "only in this run" else run)["sla"] if r[1] == call_id)
            out.append(f"sla {label}: {typ} {call_id} unit {unit} response {resp} ts {ts}; "
                       f"the other run for this call: {other}")
    for label, recs in (("extra", cmp.get("ref_sla_extra") or []), ("missing", cmp.get("ref_sla_lost") or [])):
        for typ, call_id, unit, resp, ts, _zones in recs[:8]:
            out.append(f"sla {label} against the reference: {typ} {call_id} unit {unit} response {resp} ts {ts}")
    for label, drecs in (("only in this run", cmp["duty_extra"]), ("only in clean run", cmp["duty_lost"]),
                         ("extra against the reference", cmp.get("ref_duty_extra") or []),
                         ("missing against the reference", cmp.get("ref_duty_lost") or [])):
        for r in drecs[:5]:
            out.append(f"{topics.DUTY} {label}: {dict(r)}")
    for d in cmp["duty_retracted"][:5]:
        out.append(f"{topics.DUTY} decided otherwise than in the clean run: {d}")
    for line in cmp["duty_flipped"][:5]:
        out.append(f"{topics.DUTY} contradicting each other in this run: {line}")
    if not cmp["duty_docs_equal"]:
        out.append(f"first difference in the posts, checkpoints and phase in Redis: {cmp['duty_docs_difference']}")
    if "ref_duty_docs_equal" in cmp and not cmp["ref_duty_docs_equal"]:
        out.append(f"first difference from the reference's posts, checkpoints and phase: "
                   f"{cmp['ref_duty_docs_difference']}")
    if "ref_docs_equal" in cmp and not cmp["ref_docs_equal"]:
        out.append(f"first difference from the reference's zone documents: {cmp['ref_docs_difference']}")
    if cmp["sla_retracted"]:
        out.append(f"retracted breaches (calls): {cmp['sla_retracted'][:10]}")
    if cmp["sla_flipped"]:
        out.append(f"breach and arrival <= 300 s for the same call in this run: {cmp['sla_flipped'][:10]}")
    if not cmp["docs_equal"] and cmp["docs_difference"]:
        out.append(f"first difference in the zone documents: {cmp['docs_difference']}")
        differ = sorted(z for z in clean["docs"] if clean["docs"][z] != run["docs"].get(z))
        present = [sum(d["units"]["present"] for d in r["docs"].values()) for r in (clean, run)]
        out.append(f"zone documents that differ: {len(differ)} {differ[:8]}; units present summed over all "
                   f"zones: clean {present[0]}, this run {present[1]} ({len(clean['units'])} units known)")
    if cmp["units_difference"]:
        out.append(f"first difference in {keys.UNIT_INFO}: {cmp['units_difference']}")
    if cmp["enriched_difference"]:
        out.append(f"first difference in incidents.enriched: {cmp['enriched_difference']}")
    v = cmp.get("versions")
    if v is not None:
        for r in v["repeats"][:5]:
            out.append(f"{keys.ZONE_UPDATES}: zone {r['zone']} version {r['version']} (entry {r['id']}) after "
                       f"{r['previous']} (entry {r['previous_id']}), "
                       f"{'the same document' if r['same_document'] else 'a different document'}")
        if v["frozen"]:
            out.append(f"zones the wall shows wrongly at the end: {v['frozen'][:10]}")
    seen = run.get("seen")
    if seen is not None:
        out.append(f"seen by operators: {seen['text']}")
    tk = run.get("takeovers") or []
    if tk:
        longest = max(s for _w, _p, s, _g in tk)
        out.append(f"takeovers: {len(tk)} over {len({w for w, *_ in tk})} workers, longest {longest:.2f} s, "
                   f"highest generation {max(g for _w, _p, _s, g in tk)}")
    errs = run.get("log_errors") or []
    if errs:
        out.append(f"worker logs: {len(errs)} error lines, first: {errs[0]}")
    return out


def table_row(label: str, cmp: dict, run: dict) -> str:
    """One markdown row of the closing summary."""
    v = cmp.get("versions") or {}
    seen = run.get("seen")
    return (f"| {label} | {cmp['events_counted']}/{cmp['events_expected']} | {cmp['lost']} / {cmp['duplicated']} "
            f"| {'equal' if cmp['docs_equal'] else 'DIFFER'} "
            f"| {cmp['sla_records']}: lost {cmp['sla_lost']}, extra {cmp['sla_extra']}, "
            f"retracted {len(cmp['sla_retracted'])} (redelivered {cmp['sla_redelivered']}) "
            f"| {'equal' if cmp['enriched_equal'] else 'DIFFER'} | {'yes' if cmp['zones_state_equal'] else 'NO'} "
            f"| {'equal' if cmp['wall_equal'] else 'DIFFER'} | {'equal' if cmp['units_equal'] else 'DIFFER'} "
            f"| {cmp['duty_records']}: lost {len(cmp['duty_lost'])}, extra {len(cmp['duty_extra'])}, "
            f"retracted {len(cmp['duty_retracted'])}, contradicted {len(cmp['duty_flipped'])} "
            f"(redelivered {cmp['duty_redelivered']}) | {'equal' if cmp['duty_docs_equal'] else 'DIFFER'} "
            f"| {len(v.get('problems', []))} / {len(v.get('frozen', []))} "
            + (f"| docs {'equal' if cmp['ref_docs_equal'] else 'DIFFER'}, sla.events missing "
               f"{len(cmp['ref_sla_lost'])}, extra {len(cmp['ref_sla_extra'])}, flips {len(cmp['sla_flipped'])}, "
               f"recommendations {'equal' if cmp['ref_nearest_equal'] else 'DIFFER'}, duty.events missing "
               f"{len(cmp['ref_duty_lost'])}, extra {len(cmp['ref_duty_extra'])}, duty documents "
               f"{'equal' if cmp['ref_duty_docs_equal'] else 'DIFFER'} "
               if "ref_docs_equal" in cmp else "| ") +
            f"| {'-' if seen is None else ('yes' if seen['ok'] else 'NO')} | {'equal' if cmp['ok'] else 'FAILED'} |")


TABLE_HEAD = ("| scenario | zone counts | lost / duplicated | zone docs | sla.events records | incidents.enriched "
              "| zones.state = Redis | wall incidents | unit positions | duty.events records "
              "| posts / checkpoints / phase in Redis | versions not increasing / zones frozen "
              "| against the in-process reference | seen by operators | result |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def run_scenario(chaos: Chaos, name: str, events, kills: int):
    """(label, snapshot) of one named scenario."""
    o = f"{chaos.outage_s:.0f}s"
    if name == "clean2":
        return "clean again", chaos.clean(events, name="clean2")
    if name == "kill":
        return f"kill -9 x{kills}", chaos.kills(events, kills)
    if name in ("workers2", "workers3"):
        n = int(name[-1])
        return f"{n} workers", chaos.workers(events, n)
    if name == "broker":
        return f"broker down {o}", chaos.broker_restart(events)
    if name == "redis-restart":
        return f"redis down {o}", chaos.redis_restart(events, flush=False)
    if name == "redis-freeze":
        return f"redis frozen {o}", chaos.freeze(events, "redis")
    if name == "kafka-freeze":
        return f"kafka frozen {o}", chaos.freeze(events, "kafka")
    if name == "freezes":
        return f"redis+kafka frozen {o}", chaos.freeze(events, "redis", "kafka")
    if name == "refused-send":
        return "refused send", chaos.refused_send(events)
    if name == "redis-flush":
        return "redis flush x2", chaos.redis_restart(events, flush=True)
    raise SystemExit(f"unknown scenario {name!r}; one of {ALL_SCENARIOS}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=10.0, help="simulated minutes of the event set")
    ap.add_argument("--scenarios", default=ALL_SCENARIOS)
    ap.add_argument("--outage", type=float, default=30.0, help="seconds the broker / Redis stay down or frozen")
    ap.add_argument("--bounds", choices=sorted(BOUNDS), default=os.environ.get("BOUNDS", "harness"),
                    help="the watermark's bounds: harness (idle 60 s, max lag 1 h) or contract (30 s, 60 s)")
    ap.add_argument("--kafka-port", type=int, default=int(os.environ.get("ZONEWATCH_CHAOS_KAFKA_PORT", 29092)))
    ap.add_argument("--redis-port", type=int, default=int(os.environ.get("ZONEWATCH_CHAOS_REDIS_PORT", 26379)))
    ap.add_argument("--no-plan", action="store_true",
                    help="without the duty plan (ZONEWATCH_PLAN unset, no post units, sweep or phase commands)")
    args = ap.parse_args(argv)
    state = REPO / ".stack" / "chaos"
    stack = stack_module.up(kafka_port=args.kafka_port, redis_port=args.redis_port, state_dir=state)
    try:
        plan = None
        if not args.no_plan:
            plan = state / "plan.toml"
            plan.write_text(chaos_plan(START_MS), encoding="utf-8")
        events = event_set(args.minutes, plan=plan is not None)
        print(f"event set: {len(events)} events, {args.minutes} simulated minutes; duty plan: "
              f"{'none' if plan is None else f'{plan} (bench/chaos.py chaos_plan)'}", flush=True)
        ref = reference(events, plan=plan)
        print(f"in-process reference (streams/testing.py, file order): {len(ref['docs'])} zone documents, "
              f"{len(ref['sla'])} sla.events records, breaches followed by an arrival within 300 s: "
              f"{len(flipped(ref['sla']))}; duty.events {len(ref['duty'])} records ({duty_kinds(ref['duty'])}), "
              f"contradicting each other: {len(duty_flipped(ref['duty']))}", flush=True)
        chaos = Chaos(stack, state, bounds=args.bounds, plan=plan)
        print(f"watermark bounds: {args.bounds} {chaos.bounds}", flush=True)
        chaos.outage_s = args.outage
        clean = chaos.clean(events)
        cmp = compare(clean, clean, ref)
        print(report_line("clean", len(events), cmp), flush=True)
        for line in details(clean, clean, cmp):
            print(f"  {line}", flush=True)
        failed = not cmp["ok"]
        rows = [table_row("clean", cmp, clean)]
        for name in args.scenarios.split(","):
            if name == "connector":
                r = chaos.connector_outage()
                ok = r["exit_code"] == 0 and r["sent"] == r["in_kafka"] > 0
                print(f"{'connector, broker down ' + str(int(args.outage)) + 's':<16} simulate exit {r['exit_code']}, "
                      f"reported sent {r['sent']}, in Kafka {r['in_kafka']}, lost {max(0, r['sent'] - r['in_kafka'])}, "
                      f"duplicated {max(0, r['in_kafka'] - r['sent'])}, outage in its log {r['outage_logged']}",
                      flush=True)
                failed |= not ok
                rows.append(f"| connector, broker down {args.outage:.0f} s "
                            f"| sent {r['sent']}, in Kafka {r['in_kafka']} "
                            f"| {max(0, r['sent'] - r['in_kafka'])} / {max(0, r['in_kafka'] - r['sent'])} "
                            f"| | | | | | | | | | | outage in its log: {'yes' if r['outage_logged'] else 'NO'} "
                            f"| {'equal' if ok else 'FAILED'} |")
                continue
            print(f"-- {name}", flush=True)
            try:
                label, run = run_scenario(chaos, name, events, args.kills)
            except Exception as exc:  # the next scenarios still run; this one failed
                print(f"{name:<16} ERROR {type(exc).__name__}: {str(exc)[:600]}", flush=True)
                failed = True
                rows.append(f"| {name} | error: {type(exc).__name__} | | | | | | | | | | | | | FAILED |")
                continue
            cmp = compare(clean, run, ref)
            print(report_line(label, len(events), cmp), flush=True)
            for line in details(clean, run, cmp):
                print(f"  {line}", flush=True)
            print(f"  => {'equal to the clean run' if cmp['ok'] else 'FAILED'}", flush=True)
            failed |= not cmp["ok"]
            rows.append(table_row(label, cmp, run))
        print("\n" + TABLE_HEAD + "\n" + "\n".join(rows), flush=True)
        print(f"\nduty.events of the clean run: {len(clean['duty'])} records ({duty_kinds(clean['duty'])})", flush=True)
        print("chaos: " + ("FAILED" if failed else "every scenario equal to the clean run"), flush=True)
        return 1 if failed else 0
    finally:
        stack_module.down(state_dir=state)


if __name__ == "__main__":
    sys.exit(main())
