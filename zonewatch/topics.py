"""`zonewatch topics`: create the input, output and internal topics if missing (CONTRACT §8)."""

from __future__ import annotations

import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from . import contract
from .config import Settings
from .security import kafka_python_kwargs

HOUR_MS = 3_600_000
MAX_INPUT_BYTES = 8 << 20  # streams/ingest.py fetches up to this per partition


class KafkaUnavailable(RuntimeError):
    """Kafka did not answer; the message says where we looked."""


def topic_specs(s: Settings, partitions: int) -> list[NewTopic]:
    """Every topic zonewatch uses, with its partitions and config."""
    # Input values up to 8 MiB reach the worker (and are dead-lettered if they break the
    # contract) instead of being refused to the producer by the broker's 1 MB default.
    specs = [NewTopic(s.topic(t), partitions, 1, topic_configs={"max.message.bytes": str(MAX_INPUT_BYTES)})
             for t in contract.INPUT_TOPICS]
    specs += [
        NewTopic(s.topic(contract.INCIDENTS), partitions, 1),
        NewTopic(s.topic(contract.SLA), partitions, 1),
        NewTopic(s.topic(contract.ZONES_STATE), partitions, 1,
                 topic_configs={"cleanup.policy": "compact"}),
        NewTopic(s.topic(contract.DEADLETTER), 1, 1, topic_configs={"retention.ms": str(7 * 24 * HOUR_MS)}),
        # The state stage rebuilds a partition's state from this topic: keep a day and the
        # longest window, plus margin (see streams/zone_state.py DEDUP_HORIZON_MS).
        NewTopic(s.internal_zone_events, s.partitions, 1,
                 topic_configs={"retention.ms": str(27 * HOUR_MS), "max.message.bytes": str(8 << 20)}),
    ]
    return specs


def ensure_topics(s: Settings, partitions: int | None = None, timeout_s: float = 60.0) -> list[str]:
    """Create what is missing; returns the names created. Waits for Kafka up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=s.kafka, client_id=f"{s.app_id}-admin",
                                     request_timeout_ms=10_000, **kafka_python_kwargs(s))
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"cannot reach Kafka at {s.kafka} ({exc}); is `make up` running?") from exc
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topic_specs(s, partitions or s.partitions) if t.name not in existing]
        created = []
        for spec in missing:  # one by one: a concurrent creator must not fail the others
            try:
                admin.create_topics([spec])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        _wait_for_metadata(admin, [t.name for t in missing], deadline)
        return created
    finally:
        admin.close()


def _wait_for_metadata(admin, names, deadline) -> None:
    while names:
        known = set(admin.list_topics())
        names = [n for n in names if n not in known]
        if not names or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def add_parser(sub) -> None:
    p = sub.add_parser("topics", help="create the input, output and internal topics if missing")
    p.add_argument("--partitions", type=int, default=None,
                   help="partitions of new input/output topics (default: ZONEWATCH_PARTITIONS, 4)")
    p.add_argument("--kafka", default=None, help="bootstrap servers (default ZONEWATCH_KAFKA)")
    p.set_defaults(func=run)


def run(args) -> int:
    s = Settings.from_env().with_(kafka=args.kafka)
    created = ensure_topics(s, args.partitions)
    for name in created:
        print(f"created {name}")
    print(f"{len(created)} created, {len(topic_specs(s, 1)) - len(created)} already present")
    return 0
