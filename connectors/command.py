"""What the connector commands (`zonewatch replay`, `zonewatch simulate`) share as commands: their
parser (as a `zonewatch` subcommand and as `python -m connectors.<name>`), the Kafka options, and
how they report an error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from contract.settings import Settings

Run = Callable[[argparse.Namespace], int]


def add_parser(subparsers, name: str, help: str, doc: str, add_arguments: Callable, run: Run
               ) -> argparse.ArgumentParser:
    """Register `zonewatch <name>`: `doc` is its --help text, `run(args)` what it does."""
    p = subparsers.add_parser(name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def main(module: str, doc: str, add_arguments: Callable, run: Run, argv: list[str] | None) -> int:
    """`python -m <module>`: the same command without the `zonewatch` front."""
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


def add_kafka_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kafka", metavar="HOST:PORT", help="bootstrap servers (default ZONEWATCH_KAFKA)")
    p.add_argument("--topic-prefix", metavar="PREFIX", help="topic prefix (default ZONEWATCH_TOPIC_PREFIX)")


def settings(args: argparse.Namespace) -> Settings:
    """The environment's settings (CONTRACT §7) with --kafka / --topic-prefix applied."""
    return Settings.from_env().with_(kafka=args.kafka, topic_prefix=args.topic_prefix)


def fail(command: str, message: object, code: int) -> int:
    """Print `zonewatch <command>: error: <message>` on stderr; returns the exit code."""
    print(f"zonewatch {command}: error: {message}", file=sys.stderr)
    return code
