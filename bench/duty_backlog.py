"""The worker's throughput on a backlog with and without the marathon's duty plan, on a real Kafka and
Redis (a stack of its own under .stack/duty-backlog).

    python -m bench.duty_backlog [--minutes 60] [--rounds 2] [--kafka-port 29192 --redis-port 26479]

The same events (the marathon scenario with its plan's duty layer, bench/pipeline_cost.py
`marathon_messages`) are published to a fresh deployment per way and round; then one worker is
started, with ZONEWATCH_PLAN=contract/data/plans/marathon.toml or without, alternating. Reported per
way: events/s from the worker's zonewatch_events_total between 10 % and 90 % of the events counted
(ingest), and events/s until every group has committed everything (the state included); the plan's
ratio to the no-plan way of the same round. It reports; it asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from kafka.errors import KafkaError

from contract import metrics, topics
from contract.settings import DATA_DIR
from deploy import stack as stack_module

from .chaos import group_lag
from .harness import Deployment, wait_until
from .measure import crossing, rate_between
from .pipeline_cost import marathon_messages

REPO = Path(__file__).resolve().parents[1]
PLAN = DATA_DIR / "plans" / "marathon.toml"
ZONES = DATA_DIR / "marathon_zones.geojson"


def publish(dep: Deployment, msgs) -> None:
    from kafka import KafkaProducer

    from contract.kafka_settings import kafka_python_kwargs

    prod = KafkaProducer(bootstrap_servers=dep.settings.kafka, acks="all", linger_ms=20, batch_size=256 * 1024,
                         **kafka_python_kwargs(dep.settings))
    for m in msgs:   # plan.commands has one partition
        prod.send(dep.settings.topic(m.topic), m.value, key=m.key,
                  partition=0 if m.topic == topics.PLAN_COMMANDS else m.partition)
    prod.flush()
    prod.close()


def one_way(stack: dict, msgs, plan: bool, tag: str) -> dict:
    """Publish, start a worker, follow its counter until every event is counted and committed."""
    dep = Deployment(stack, ZONES, 4, name=tag)
    try:
        if plan:
            dep.env["ZONEWATCH_PLAN"] = str(PLAN)
        publish(dep, msgs)
        n = len(msgs)
        samples: list[tuple[float, float]] = []
        dep.start_worker()
        port = dep.workers[-1][1]

        def committed() -> bool:
            samples.append((time.monotonic(), sum(dep.metrics(port).values())))
            try:
                return group_lag(dep) == 0
            except KafkaError:   # a group coordinator not ready yet: ask again
                return False

        wait_until(committed, timeout=1800, interval=0.25, what="every group committed")
        done = time.monotonic()
        counted = samples[-1][1]   # every event, whatever its outcome (the counter's final value)
        first = crossing(samples, 1)
        return {"events": n, "counted": counted, "events_per_s": rate_between(samples, counted, 0.1, 0.9),
                "to_committed_per_s": n / (done - first) if first else None,
                "errors": sum(1 for ln in dep.worker_log(-1).splitlines() if "Traceback" in ln)}
    finally:
        dep.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="simulated minutes of the marathon")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--kafka-port", type=int, default=29192)
    ap.add_argument("--redis-port", type=int, default=26479)
    a = ap.parse_args(argv)
    state = REPO / ".stack" / "duty-backlog"
    stack = stack_module.up(kafka_port=a.kafka_port, redis_port=a.redis_port, state_dir=state)
    try:
        msgs, duty = marathon_messages(PLAN, a.minutes)
        print(f"the marathon, {a.minutes:g} simulated minutes: {len(msgs)} events ({duty} of them the duty "
              f"layer's); {metrics.EVENTS} between 10 % and 90 %, and until every group committed", flush=True)
        for r in range(a.rounds):
            got = {}
            for plan in (False, True):
                tag = f"duty{r}{'p' if plan else 'n'}-{time.time_ns() % 10**6}"
                got[plan] = w = one_way(stack, msgs, plan, tag)
                print(f"  round {r + 1}, {'marathon plan' if plan else 'no plan':<13} {w['events_per_s']:8.0f} "
                      f"events/s (to every group committed {w['to_committed_per_s']:.0f}/s; {w['counted']:.0f} "
                      f"counted; tracebacks {w['errors']})", flush=True)
            print(f"  round {r + 1}: the plan's ratio {got[True]['events_per_s'] / got[False]['events_per_s']:.3f} "
                  f"(committed {got[True]['to_committed_per_s'] / got[False]['to_committed_per_s']:.3f})", flush=True)
    finally:
        stack_module.down(state_dir=state)


if __name__ == "__main__":
    main()
