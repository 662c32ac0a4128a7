"""`zonewatch worker`: one worker process (the topology is streams/app.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from contract.settings import Settings
from contract.topics import ensure_topics
from contract.zones import load_zones

from .rules import load_rules


def add_parser(sub) -> None:
    p = sub.add_parser("worker", help="run one Faust worker (start more for more throughput)")
    p.add_argument("--web-port", type=int, default=int(os.environ.get("ZONEWATCH_WEB_PORT", 6066)),
                   help="port of /metrics (default 6066)")
    p.add_argument("--kafka", help="bootstrap servers (default ZONEWATCH_KAFKA)")
    p.add_argument("--redis", help="Redis URL (default ZONEWATCH_REDIS)")
    p.add_argument("--zones", help="zones GeoJSON (default ZONEWATCH_ZONES, the bundled demo)")
    p.add_argument("--partitions", type=int, help="partitions of the internal zone-events topic")
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(func=run)


def run(args) -> int:
    from .app import create_app

    s = Settings.from_env().with_(kafka=args.kafka, redis=args.redis,
                                  zones=Path(args.zones) if args.zones else None,
                                  partitions=args.partitions)
    s.check()
    load_rules(s.rules)   # refuse a bad rules or zones file before touching Kafka
    load_zones(s.zones)
    ensure_topics(s)
    app = create_app(s, web_port=args.web_port)
    sys.argv = ["zonewatch", "worker", "-l", args.loglevel, "--web-port", str(args.web_port),
                "--web-host", "127.0.0.1", "--web-bind", "127.0.0.1",
                "--without-web" if args.web_port == 0 else "--with-web"]
    app.main()
    return 0
