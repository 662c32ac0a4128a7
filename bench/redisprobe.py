"""What the worker asks of Redis during a bench phase.

`snapshot()` reads `INFO commandstats` and the zone-updates stream's `entries-added` (XINFO
STREAM; CONTRACT §3: one entry per zone write); `delta(a, b)` gives the calls per command between
two snapshots less the bench's own INFO and XINFO. Server-wide: the phase must have that Redis to
itself (the bench's own stack). Neither figure tells a command the worker sent from one its Lua
script ran (Redis counts both alike), so `MonitorSample` reads MONITOR for a few seconds under the
same load: every line names its client (`lua` for a script's commands), which bench/measure.py's
MonitorTally counts and procstat.client_owners maps to the worker or the gateway.
"""

from __future__ import annotations

import threading
import time

import redis

from contract import keys

from .measure import MonitorTally, calls_from_info, commands_delta

#: the bench's own commands between two snapshots: the first snapshot's INFO and XINFO
OWN_PER_SNAPSHOT = {"info": 1, "xinfo|stream": 1}


class RedisProbe:
    def __init__(self, client: redis.Redis):
        self.r = client

    def snapshot(self) -> dict:
        calls = calls_from_info(self.r.info("commandstats"))
        entries = None
        try:
            entries = int(self.r.xinfo_stream(keys.ZONE_UPDATES).get("entries-added"))
        except (redis.ResponseError, TypeError, ValueError):
            entries = None  # no zone written yet (or a Redis before 7.0)
        return {"t": time.perf_counter(), "calls": calls, "zone_updates_added": entries}

    @staticmethod
    def delta(a: dict, b: dict) -> dict:
        d = commands_delta(a["calls"], b["calls"], OWN_PER_SNAPSHOT)
        za, zb = a.get("zone_updates_added"), b.get("zone_updates_added")
        return {"seconds": b["t"] - a["t"], "commands": dict(sorted(d.items(), key=lambda kv: -kv[1])),
                "zone_updates_added": (zb - (za or 0)) if zb is not None else None}


class MonitorSample:
    """MONITOR on its own connection, read in a thread into a MonitorTally until stop()."""

    def __init__(self, client: redis.Redis):
        self.tally = MonitorTally(keys.zone(""))
        self._conn = client.connection_pool.make_connection()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self.error: str | None = None
        self.t0 = self.t1 = 0.0

    def start(self) -> None:
        self._conn.connect()
        self._conn.send_command("MONITOR")
        self._conn.read_response()   # +OK: from here on every command is shown
        self.t0 = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        sock = self._conn._sock
        try:
            sock.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    chunk = sock.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                self.tally.feed(chunk)
        except OSError as exc:
            self.error = repr(exc)

    def stop(self) -> MonitorTally:
        self.t1 = time.perf_counter()
        self._stop.set()
        self._thread.join(5)
        try:
            self._conn.disconnect()
        except Exception:  # closing a MONITOR connection can only fail in uninteresting ways
            pass
        return self.tally
