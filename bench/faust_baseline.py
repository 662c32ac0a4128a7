"""Baseline B: Faust's own per-event ceiling — one trivial stateless agent, run as a subprocess.

    python -m bench.faust_baseline --kafka H:P --topics a,b,c --app-id ID --expect N --out FILE

One agent on the list of input topics (`value_serializer='raw'`) does `orjson.loads` of every
value and counts. Once `--expect` events are counted it writes
`{"events": N, "first_to_last_s": ..., "events_per_s": ...}` to `--out` (and `--out`.progress
every second while running), then stops its own worker with SIGTERM. Its own app id (consumer
group), in-memory store, web server disabled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import faust
import orjson


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faust_baseline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kafka", required=True)
    p.add_argument("--topics", required=True, help="comma-separated (prefixed) input topics")
    p.add_argument("--app-id", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--datadir", required=True)
    args = p.parse_args(argv)

    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.kafka}",
        store="memory://",
        datadir=args.datadir,
        web_enabled=False,
        topic_partitions=args.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(*args.topics.split(","), value_serializer="raw", key_serializer="raw")
    state = {"n": 0, "bad": 0, "first": None, "last_progress": 0.0, "done": False}

    def write(path: str, obj: dict) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)

    @app.agent(topic)
    async def count(stream):
        expect = args.expect
        async for value in stream:
            if state["first"] is None:
                state["first"] = time.monotonic()
            try:
                orjson.loads(value)
            except orjson.JSONDecodeError:
                state["bad"] += 1
            state["n"] += 1
            n = state["n"]
            if n >= expect and not state["done"]:
                state["done"] = True
                dt = time.monotonic() - state["first"]
                write(args.out, {"events": n, "invalid_json": state["bad"], "first_to_last_s": dt,
                                 "events_per_s": (n - 1) / dt if dt > 0 else None})
                os.kill(os.getpid(), signal.SIGTERM)  # the Faust worker shuts down cleanly
            elif not n % 1000:
                now = time.monotonic()
                if now - state["last_progress"] >= 1.0:
                    state["last_progress"] = now
                    write(args.out + ".progress", {"events": n, "t": now - state["first"]})

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
