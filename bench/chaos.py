"""`make chaos`: kill -9 workers, restart the broker, restart and flush Redis during a replay,
and compare the end state with a clean run of the same events.

The same fixed event set (the bundled scenario at a fixed start time, so event time is the
same in every run) is replayed into one deployment per scenario (own topic prefix, app id and
Redis db on the shared stack). For each scenario the harness prints: events in, zone counters
compared, lost and duplicated counters in the final zone state (against the clean run), and the
same for the output topics (sla.events as a set of decisions, incidents.enriched and
zones.state as the last record per key, and the wall's open incidents in zw:incidents). Outputs
are at-least-once: a decision re-made after a crash is re-sent as an identical record, which is
reported as a redelivery, not a duplicate. For the broker and Redis outages it also shows what an
operator sees: the worker's `zonewatch_dependency_up` scraped during the outage, its outage
counter afterwards, and the worker's log lines about it.

    python -m bench.chaos [--kills 5] [--minutes 10] [--scenarios kill,broker,redis-restart,redis-flush]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import Deployment, wait_until  # noqa: E402
from connectors.scenario import scenario_events  # noqa: E402
from contract import keys, metrics, topics  # noqa: E402
from gateway import promtext  # noqa: E402
from deploy import stack as stack_module  # noqa: E402
from contract.settings import DEMO_ZONES  # noqa: E402

from contract.security import kafka_python_kwargs  # noqa: E402

START_MS = 1_714_550_400_000  # 2024-05-01T08:00:00Z: a fixed past, so every run has the same event time
COUNTERS = ("calls", "alerts")


def event_set(minutes: float, seed: int = 11) -> list[tuple[str, dict]]:
    return list(scenario_events(seed, units=120, cameras=60, calls_per_min=4.0, alerts_per_min=30.0,
                                start_ms=START_MS, duration_s=minutes * 60))


def produce_chunks(dep: Deployment, events, chunks: int, between=None) -> None:
    """Publish in `chunks` slices (topics interleaved as in the file); call `between(i)` after each."""
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=dep.settings.kafka, acks="all", linger_ms=5,
                         retries=2**31 - 1, max_in_flight_requests_per_connection=1,
                         **kafka_python_kwargs(dep.settings))
    size = max(1, len(events) // chunks)
    for i in range(0, len(events), size):
        for topic, ev in events[i:i + size]:
            key = str(ev.get(topics.KEY_FIELD[topic], "")).encode() or None
            prod.send(dep.settings.topic(topic), orjson.dumps(ev), key=key)
        prod.flush()
        if between is not None:
            between(i // size)
    prod.close()


def group_lag(dep: Deployment) -> int:
    """Messages not yet committed by the ingest and the Faust groups (0 when all is processed)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    kw = kafka_python_kwargs(dep.settings)
    admin = KafkaAdminClient(bootstrap_servers=dep.settings.kafka, **kw)
    consumer = KafkaConsumer(bootstrap_servers=dep.settings.kafka, **kw)
    try:
        lag = 0
        groups = {f"{dep.settings.app_id}-ingest": [dep.settings.topic(t) for t in topics.INPUT_TOPICS],
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
        lag = group_lag(dep)
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


def snapshot(dep: Deployment, docs: dict) -> dict:
    """What must be equal to the clean run: zone documents and the output topics."""
    sla_raw = [orjson.loads(m.value) for m in dep.consume_all(topics.SLA, 10**9, timeout=4)]
    sla = {(e["type"], e["call_id"], e["unit_id"], e["response_s"], e["ts"], tuple(e["zone_ids"])) for e in sla_raw}
    # The decisions in effect (README, "Reading sla.events"): a call's earliest arrival (an arrival
    # decided from the fixes consumed so far is corrected by an earlier fix consumed later), and its
    # breach unless an arrival within 300 s supersedes it (that fix was consumed after the stream
    # clock had passed the deadline: which fixes are consumed before the clock passes a deadline
    # depends on how the input topics interleave, not on the events, so it differs between runs).
    effective: dict = {}
    breaches: dict = {}
    for typ, call_id, unit, resp, ts, zones in sla:
        if typ == "breach":
            breaches[call_id] = (-1, ts, unit, zones)
            continue
        key = (typ, call_id)
        cand = (resp, ts, unit, zones)
        if key not in effective or cand < effective[key]:
            effective[key] = cand
    superseded = 0
    for call_id, dec in breaches.items():
        arrived = effective.get(("arrived", call_id))
        if arrived is not None and arrived[0] <= 300:
            superseded += 1
        else:
            effective[("breach", call_id)] = dec
    enriched_raw = dep.consume_all(topics.INCIDENTS, 10**9, timeout=4)
    enriched = {}
    for m in enriched_raw:
        rec = orjson.loads(m.value)
        # processing time and the positions seen at processing time are not event-time facts
        rec.pop("processed_at", None)
        rec.pop("nearest_units", None)
        enriched[m.key.decode()] = rec
    wall = {}
    for cid, js in dep.redis.hgetall(keys.INCIDENTS).items():
        d = orjson.loads(js)
        wall[cid.decode()] = (d["status"], d["ts"], tuple(d["zones"]), d["breach_at"], d["priority"])
    zstate = {}
    for m in dep.consume_all(topics.ZONES_STATE, 10**9, timeout=4):
        doc = orjson.loads(m.value)
        doc.pop("version", None)
        zstate[m.key.decode()] = doc
    return {
        "docs": {z: {k: v for k, v in d.items() if k != "version"} for z, d in docs.items()},
        "sla": set(effective.items()), "sla_superseded": superseded,
        "sla_corrections": len(sla) - len(effective) - superseded,
        "sla_redelivered": len(sla_raw) - len(sla),
        "enriched": enriched, "enriched_redelivered": len(enriched_raw) - len(enriched),
        "zones_state": zstate, "wall": wall,
    }


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


def _first_difference(a: dict, b: dict) -> str | None:
    """Where two last-record-per-key maps differ first (for the report)."""
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key), b.get(key)
        if ra != rb:
            if ra is None or rb is None:
                return f"{key}: only in {'clean' if rb is None else 'this'} run"
            fields = sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))
            return f"{key}: " + "; ".join(f"{f}: clean {ra.get(f)!r} vs {rb.get(f)!r}" for f in fields)[:400]
    return None


def compare(clean: dict, run: dict) -> dict:
    a, b = _flat_counts(clean["docs"]), _flat_counts(run["docs"])
    lost = sum(max(0, a[k] - b.get(k, 0)) for k in a)
    dup = sum(max(0, b.get(k, 0) - a[k]) for k in a)
    return {
        "counters": len(a),
        "events_counted": sum(v for k, v in b.items() if k[1] == "today"),
        "events_expected": sum(v for k, v in a.items() if k[1] == "today"),
        "lost": lost, "duplicated": dup,
        "docs_equal": clean["docs"] == run["docs"],
        "sla_lost": len(clean["sla"] - run["sla"]), "sla_extra": len(run["sla"] - clean["sla"]),
        "sla_redelivered": run["sla_redelivered"], "sla_corrections": run["sla_corrections"],
        "sla_superseded": run["sla_superseded"],
        "enriched_equal": clean["enriched"] == run["enriched"],
        "enriched_difference": _first_difference(clean["enriched"], run["enriched"]),
        "enriched_redelivered": run["enriched_redelivered"],
        "zones_state_equal": run["zones_state"] == run["docs"],
        "wall_equal": clean["wall"] == run["wall"], "wall_open": len(run["wall"]),
    }


class Chaos:
    def __init__(self, stack: dict, state_dir: Path, partitions: int = 4, seed: int = 5):
        self.stack = stack
        self.state_dir = state_dir
        self.partitions = partitions
        self.rng = random.Random(seed)
        self.outage_s = 1.0

    @contextlib.contextmanager
    def running(self, name: str, joined: bool = True):
        """A fresh deployment with one worker (a member of its groups unless `joined` is false);
        its workers are stopped and its Redis db flushed on leaving."""
        dep = Deployment(self.stack, DEMO_ZONES, self.partitions, name=f"{name}-{os.getpid()}")
        try:
            dep.start_worker()
            if joined:
                dep.wait_workers_joined()
            yield dep
        finally:
            dep.close()

    def clean(self, events) -> dict:
        with self.running("clean", joined=False) as dep:
            produce_chunks(dep, events, 1)
            return snapshot(dep, settle(dep, final_clock(events)))

    def kills(self, events, kills: int) -> dict:
        with self.running("kill") as dep:
            def between(i):
                if i < kills:
                    time.sleep(self.rng.uniform(0.05, 1.5))  # somewhere in the processing of the chunk
                    dep.kill_worker(len(dep.workers) - 1, signal.SIGKILL)
                    dep.start_worker()
                    worker_ready(dep)  # the next kill hits a worker that is processing
            produce_chunks(dep, events, kills + 1, between)
            return snapshot(dep, settle(dep, final_clock(events)))

    def broker_restart(self, events) -> dict:
        return self._outage(events, "broker", "kafka", "Kafka")

    def redis_restart(self, events, flush: bool) -> dict:
        if not flush:
            return self._outage(events, "redisrestart", "redis", "Redis")
        with self.running("redisflush") as dep:
            def between(i):
                if i == 1:
                    time.sleep(self.rng.uniform(0.05, 1.0))  # while the worker is busy with the chunks
                    dep.redis.flushdb()
            produce_chunks(dep, events, 3, between)
            settle(dep, final_clock(events))
            dep.redis.flushdb()  # once more after the end: restored without any new input
            time.sleep(3.0)
            return snapshot(dep, settle(dep, final_clock(events)))

    def _outage(self, events, name: str, service: str, what: str) -> dict:
        """`service` (kafka | redis) down for `outage_s` while the worker is busy with the second
        of three chunks; the snapshot also tells what operators saw of the outage."""
        with self.running(name) as dep:
            during = {}

            def between(i):
                if i == 1:
                    time.sleep(self.rng.uniform(0.05, 1.0))  # while the worker is busy with the chunks
                    self._restart(service, lambda: during.update(up=worker_gauge(dep, service)))
            produce_chunks(dep, events, 3, between)
            snap = snapshot(dep, settle(dep, final_clock(events)))
            snap["outage_seen"] = outage_seen(dep, service, what, during.get("up"))
            return snap

    def connector_outage(self) -> dict:
        """`zonewatch simulate` publishing while the broker is down for `outage_s`: it must buffer
        (or fail loudly); every event it reports as sent must be in Kafka exactly once."""
        import re
        import subprocess

        from kafka import KafkaConsumer, TopicPartition

        from contract.settings import Settings
        from contract.topics import ensure_topics

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

    def _restart(self, name: str, during=None) -> None:
        """Stop a server, keep it down for `self.outage_s`, start it again; `during()` is called
        halfway through the outage."""
        stack_module.stop_service(name, self.state_dir)
        print(f"  {name} down for {self.outage_s:.0f} s", flush=True)
        time.sleep(self.outage_s / 2)
        if during is not None:
            during()
        time.sleep(self.outage_s / 2)
        kport = int(self.stack["kafka"].rsplit(":", 1)[1])
        rport = int(self.stack["redis"].rsplit(":", 1)[1].split("/")[0])
        stack_module.up(kafka_port=kport, redis_port=rport, state_dir=self.state_dir)


def worker_ready(dep: Deployment, timeout: float = 120) -> None:
    """Wait until the newest worker has joined its group and started (Faust logs "Worker]: Ready")."""
    log = dep.workers[-1][2]
    wait_until(lambda: "Worker]: Ready" in log.read_text(errors="replace"), timeout=timeout,
               what="the restarted worker ready")


def worker_dependencies(dep: Deployment, metric: str) -> dict[str, float]:
    """The newest worker's `metric` (labelled by dependency) as {dependency: value}."""
    rows = promtext.parse(promtext.fetch(f"http://127.0.0.1:{dep.workers[-1][1]}/metrics"))
    return promtext.counter_sum(rows, metric, by="dependency")


def worker_gauge(dep: Deployment, dependency: str) -> float | None:
    try:
        return worker_dependencies(dep, metrics.DEPENDENCY_UP).get(dependency)
    except OSError:
        return None


def outage_seen(dep: Deployment, dependency: str, what: str, up_during) -> dict:
    """What an operator saw of an outage: the gauge during it, the counter and log lines after."""
    outages = worker_dependencies(dep, metrics.DEPENDENCY_OUTAGES).get(dependency, 0)
    up_after = worker_dependencies(dep, metrics.DEPENDENCY_UP).get(dependency)
    log = dep.workers[-1][2].read_text(errors="replace").splitlines()
    down_line = next((ln for ln in log if f"{what} unreachable" in ln), None)
    back_line = next((ln for ln in log if f"{what} reachable again" in ln), None)
    ok = up_during == 0 and up_after == 1 and outages >= 1 and down_line is not None and back_line is not None
    short = lambda ln: ln[ln.index(what):][:110] if ln else "MISSING"  # noqa: E731
    return {"ok": ok, "text": f'{metrics.DEPENDENCY_UP}{{dependency="{dependency}"}} during {up_during}, '
                              f"after {up_after}; outages_total {outages:.0f}; log: {short(down_line)!r} / "
                              f"{short(back_line)!r}"}


def report_line(name: str, n_in: int, cmp: dict) -> str:
    return (f"{name:<15} events in {n_in:>6}  zone counts {cmp['events_counted']:>6}/{cmp['events_expected']:<6} "
            f"lost {cmp['lost']}  duplicated {cmp['duplicated']}  zone docs equal {cmp['docs_equal']}  "
            f"sla lost {cmp['sla_lost']} extra {cmp['sla_extra']} (redelivered {cmp['sla_redelivered']}, "
            f"corrected {cmp['sla_corrections']}, superseded breaches {cmp['sla_superseded']})  "
            f"enriched equal {cmp['enriched_equal']} (redelivered {cmp['enriched_redelivered']})  "
            f"zones.state = Redis {cmp['zones_state_equal']}  "
            f"wall incidents equal {cmp['wall_equal']} ({cmp['wall_open']} open)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=10.0, help="simulated minutes of the event set")
    ap.add_argument("--scenarios", default="kill,broker,redis-restart,redis-flush,connector")
    ap.add_argument("--outage", type=float, default=30.0, help="seconds the broker / Redis stay down")
    ap.add_argument("--kafka-port", type=int, default=int(os.environ.get("ZONEWATCH_CHAOS_KAFKA_PORT", 29092)))
    ap.add_argument("--redis-port", type=int, default=int(os.environ.get("ZONEWATCH_CHAOS_REDIS_PORT", 26379)))
    args = ap.parse_args(argv)
    state = REPO / ".stack" / "chaos"
    stack = stack_module.up(kafka_port=args.kafka_port, redis_port=args.redis_port, state_dir=state)
    try:
        events = event_set(args.minutes)
        print(f"event set: {len(events)} events, {args.minutes} simulated minutes", flush=True)
        chaos = Chaos(stack, state)
        chaos.outage_s = args.outage
        clean = chaos.clean(events)
        print(report_line("clean", len(events), compare(clean, clean)), flush=True)
        failed = False
        for name in args.scenarios.split(","):
            if name == "kill":
                run = chaos.kills(events, args.kills)
                label = f"kill -9 x{args.kills}"
            elif name == "broker":
                run, label = chaos.broker_restart(events), f"broker down {args.outage:.0f}s"
            elif name == "redis-restart":
                run, label = chaos.redis_restart(events, flush=False), f"redis down {args.outage:.0f}s"
            elif name == "connector":
                r = chaos.connector_outage()
                ok = r["exit_code"] == 0 and r["sent"] == r["in_kafka"] > 0
                print(f"{'connector, broker down ' + str(int(args.outage)) + 's':<15} simulate exit {r['exit_code']}, "
                      f"reported sent {r['sent']}, in Kafka {r['in_kafka']}, lost {max(0, r['sent'] - r['in_kafka'])}, "
                      f"duplicated {max(0, r['in_kafka'] - r['sent'])}, outage in its log {r['outage_logged']}",
                      flush=True)
                failed |= not ok
                continue
            elif name == "redis-flush":
                run, label = chaos.redis_restart(events, flush=True), "redis flush x2"
            else:
                raise SystemExit(f"unknown scenario {name!r}")
            cmp = compare(clean, run)
            print(report_line(label, len(events), cmp), flush=True)
            for label2, decs in (("only in this run", run["sla"] - clean["sla"]), ("only in clean run", clean["sla"] - run["sla"])):
                for (typ, call_id), (resp, ts, unit, zones) in sorted(decs)[:5]:
                    other = [d for d in (clean if label2 == "only in this run" else run)["sla"] if d[0][1] == call_id]
                    print(f"  sla {label2}: {typ} {call_id} response {resp} ts {ts} unit {unit}; "
                          f"the other run for this call: {sorted(other)}", flush=True)
            if cmp["enriched_difference"]:
                print(f"  first difference in incidents.enriched: {cmp['enriched_difference']}", flush=True)
            failed |= bool(cmp["lost"] or cmp["duplicated"] or not cmp["docs_equal"] or cmp["sla_lost"]
                           or cmp["sla_extra"] or not cmp["enriched_equal"] or not cmp["zones_state_equal"]
                           or not cmp["wall_equal"])
            seen = run.get("outage_seen")
            if seen is not None:
                print(f"  seen by operators: {seen['text']}", flush=True)
                failed |= not seen["ok"]
        return 1 if failed else 0
    finally:
        stack_module.down(state_dir=state)


if __name__ == "__main__":
    sys.exit(main())
