"""`zonewatch worker`: one worker process (the topology is streams/app.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from contract.kafka_settings import ensure_topics
from contract.logs import dict_config, level_name
from contract.settings import Settings
from contract.zones import load_zones

from .rules import load_rules


def add_parser(sub) -> None:
    p = sub.add_parser("worker", help="run one Faust worker (start more for more throughput)")
    p.add_argument("--web-port", type=int, default=int(os.environ.get("ZONEWATCH_WEB_PORT", 6066)),
                   help="port of /metrics (default ZONEWATCH_WEB_PORT, 6066; 0 = no web server)")
    p.add_argument("--web-bind", default=os.environ.get("ZONEWATCH_WEB_BIND", "127.0.0.1"),
                   help="address /metrics listens on (default ZONEWATCH_WEB_BIND, 127.0.0.1; "
                        "0.0.0.0 in a container so Prometheus can scrape it)")
    p.add_argument("--role", choices=("all", "ingest", "state"), default=os.environ.get("ZONEWATCH_ROLE", "all"),
                   help="which stages this process runs (default ZONEWATCH_ROLE, all): an ingest process and a "
                        "state process beside it use two cores (docs/OPERATIONS.md)")
    p.add_argument("--kafka", help="bootstrap servers (default ZONEWATCH_KAFKA)")
    p.add_argument("--redis", help="Redis URL (default ZONEWATCH_REDIS)")
    p.add_argument("--zones", help="zones GeoJSON (default ZONEWATCH_ZONES, the bundled demo)")
    p.add_argument("--partitions", type=int, help="partitions of the internal zone-events topic")
    # the spelling of earlier versions; --log-level is the one for every command
    p.add_argument("--loglevel", dest="log_level", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=run, configures_logging=True)


def run(args) -> int:
    import faust

    from .app import create_app

    s = Settings.from_env().with_(kafka=args.kafka, redis=args.redis,
                                  zones=Path(args.zones) if args.zones else None,
                                  partitions=args.partitions)
    s.check()
    load_rules(s.rules)   # refuse a bad rules or zones file before touching Kafka
    load_zones(s.zones, id_property=s.zone_id_property)
    ensure_topics(s)
    level = level_name(getattr(args, "log_level", None))
    app = create_app(s, web_port=args.web_port, web_bind=args.web_bind, role=args.role)
    worker = faust.Worker(app, loglevel=level.upper(), quiet=getattr(args, "log_format", "text") == "json",
                          logging_config=dict_config(level, getattr(args, "log_format", "text")),
                          redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
