"""`zonewatch` command line: one subcommand per piece, each runnable alone (CONTRACT §8).

Each subcommand lives in its own module and registers itself through `add_parser(subparsers)`;
the module is imported only when needed so `zonewatch --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from contract.errors import ZonewatchError
from contract.logs import FORMATS, LEVELS, configure, format_name, level_name

from . import __version__

# subcommand -> module that defines add_parser(subparsers) and sets `func` on its parser
COMMANDS = {
    "topics": "zonewatch.topics",
    "worker": "streams.worker",
    "replay": "connectors.replay",
    "simulate": "connectors.simulate",
    "watch": "zonewatch.watch",
    "gateway": "gateway.app",
    "briefing": "zonewatch.briefing",
    "plan": "zonewatch.plan",
    "drill": "zonewatch.drill",
}


def _log_options(p: argparse.ArgumentParser) -> None:
    """The one spelling of the log options, on the main parser and on every command."""
    if "--log-level" not in p._option_string_actions:
        p.add_argument("--log-level", dest="log_level", default=argparse.SUPPRESS,
                       help=f"one of {', '.join(LEVELS)} (default ZONEWATCH_LOG_LEVEL, else warning)")
    if "--log-format" not in p._option_string_actions:
        p.add_argument("--log-format", dest="log_format", default=argparse.SUPPRESS, choices=FORMATS,
                       help="text or json lines (default ZONEWATCH_LOG_FORMAT, else text)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zonewatch",
        description="Streaming per-zone situation state for a command center (Kafka -> Faust -> Redis).",
    )
    parser.add_argument("--version", action="version", version=f"zonewatch {__version__}")
    _log_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        try:
            importlib.import_module(module).add_parser(sub)
        except ModuleNotFoundError as exc:  # a piece not built yet is absent, not faked
            if exc.name != module:
                raise
    for p in sub.choices.values():
        _log_options(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.log_level = level_name(getattr(args, "log_level", None))
        args.log_format = format_name(getattr(args, "log_format", None))
        if not getattr(args, "configures_logging", False):
            configure(args.log_level, args.log_format)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ZonewatchError as exc:
        # a refusal with a message naming what to fix: show it, not a traceback
        print(f"zonewatch {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
