"""`zonewatch` command line: one subcommand per piece, each runnable alone (CONTRACT §8).

Each subcommand lives in its own module and registers itself through `add_parser(subparsers)`;
the module is imported only when needed so `zonewatch --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from contract.errors import ZonewatchError

# subcommand -> module that defines add_parser(subparsers) and sets `func` on its parser
COMMANDS = {
    "topics": "zonewatch.topics",
    "worker": "streams.worker",
    "replay": "connectors.replay",
    "simulate": "connectors.simulate",
    "watch": "zonewatch.watch",
    "gateway": "gateway.app",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zonewatch",
        description="Streaming per-zone situation state for a command center (Kafka -> Faust -> Redis).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            importlib.import_module(module).add_parser(sub)
        except ModuleNotFoundError as exc:  # a piece not built yet is absent, not faked
            if exc.name != module:
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ZonewatchError as exc:
        # a refusal with a message naming what to fix: show it, not a traceback
        print(f"zonewatch {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
