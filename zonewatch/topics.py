"""`zonewatch topics`: create the input, output and internal topics if missing (CONTRACT §8)."""

from __future__ import annotations

from contract.kafka_settings import ensure_topics, topic_specs
from contract.settings import Settings


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
