"""`zonewatch watch`: a live terminal table of every zone's state (CONTRACT §3) against any deployment.

Columns per zone: ring (or the kind of a zone without one: grid, district, route, other), level,
calls and alerts today, 5-minute and 15-minute figures, units present/available, open incidents,
the response of the last 60 minutes as the wall shows it (`response_cells`: the shares of the
decided calls reached within 1/3/5 min, breaches in red, p50/p90 in min:s), the 3-minute reach
share (`reach.within_3m`, red below 50 %), health (`✓`, or `⚠` when the picture cannot be trusted
by the wall's rule, `distrust`; then silent/known cameras · quiet units), the
document's version and age. Rings come first, route segments last in course order.

Reads Redis only (`SMEMBERS zw:zones`, one `MGET zw:zone:{id}...` per refresh, `XINFO STREAM
zw:zone-updates` for the update rate) and, for the header's end-to-end latency, the workers'
Prometheus `/metrics` (`zonewatch_e2e_latency_seconds_bucket`, summed over sources and workers; the
quantiles are interpolated within buckets as Prometheus' `histogram_quantile` does, over the bucket
deltas of the last refresh window; a window without events shows the last figures, marked idle).
Polling every `--interval` costs a handful of small round trips: cheap enough for a wall display,
and it never misses the latest state (a document is the whole truth).

    zonewatch watch                                # live, Ctrl-C to leave
    zonewatch watch --once                         # one table (scripts, tests)
    zonewatch watch --metrics http://127.0.0.1:6066/metrics --metrics http://127.0.0.1:6067/metrics
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from contract import keys, metrics, redisurl
from contract.errors import RedisUnavailable, WatchError
from contract.security import redacted_url
from contract.settings import Settings, redis_url_from_env
from contract.zones import RING_ORDER
from gateway import promtext
from gateway.promtext import histogram_quantile

DEFAULT_WEB_PORT = 6066

LEVEL_STYLE = {"green": "bold green", "yellow": "bold yellow", "orange": "bold dark_orange", "red": "bold white on red"}
LEVEL_ORDER = ("red", "orange", "yellow", "green")
#: the wall's trust rule (docs/GATEWAY.md "Health on the wall", gateway/static/wall.js): no patrol fix from inside
#: the zone for longer than this makes its picture untrustworthy
GPS_STALE_S = 900
#: a 3-minute reach share below this is shown in red (as on the wall)
REACH_LOW = 0.5


# --------------------------------------------------------------------------- latency quantiles


def parse_e2e_buckets(text: str) -> dict[float, float]:
    """Cumulative e2e latency bucket counts by `le`, summed over all other labels (the sources)."""
    return promtext.buckets(text, metrics.E2E_LATENCY)


@dataclass
class Latency:
    """End-to-end latency over the last window, from `answered` of `asked` workers."""

    asked: int = 0
    answered: int = 0
    count: float = 0.0            # observations in the window (0 when no window yet)
    p50: float | None = None
    p99: float | None = None
    warming: bool = False         # a worker answered for the first time: no window yet
    idle_s: float | None = None   # the window was empty: p50/p99 are of the last non-empty one, this old


_fetch = promtext.fetch


class LatencySampler:
    """Keeps the previous scrape of each worker; each `sample()` gives the quantiles of the deltas."""

    def __init__(self, urls: list[str], timeout: float = 0.5, fetch: Callable[[str, float], str] = _fetch):
        self.urls = list(urls)
        self.timeout = timeout
        self.fetch = fetch
        self.prev: dict[str, dict[float, float]] = {}
        self.last: tuple[float, float | None, float | None] | None = None  # (monotonic, p50, p99)
        self._pool = ThreadPoolExecutor(max_workers=len(self.urls)) if len(self.urls) > 1 else None

    def _scrape(self, url: str) -> dict[float, float] | None:
        try:
            return parse_e2e_buckets(self.fetch(url, self.timeout))
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def sample(self) -> Latency:
        if self._pool is not None:
            scraped = list(self._pool.map(self._scrape, self.urls))
        else:
            scraped = [self._scrape(u) for u in self.urls]
        lat = Latency(asked=len(self.urls))
        window: dict[float, float] = {}
        have_window = False
        for url, cur in zip(self.urls, scraped, strict=True):
            if cur is None:
                self.prev.pop(url, None)      # a worker that comes back starts a new window
                continue
            lat.answered += 1
            prev = self.prev.get(url)
            self.prev[url] = cur
            if prev is None:
                lat.warming = True
                continue
            delta = {le: cur[le] - prev.get(le, 0.0) for le in cur}
            if any(v < 0 for v in delta.values()):   # the worker restarted: its counters reset
                delta = dict(cur)
            have_window = True
            for le, v in delta.items():
                window[le] = window.get(le, 0.0) + v
        if have_window:
            lat.warming = False
            lat.count = window.get(math.inf, 0.0)
            now = time.monotonic()
            if lat.count > 0:
                lat.p50 = histogram_quantile(0.50, window.items())
                lat.p99 = histogram_quantile(0.99, window.items())
                self.last = (now, lat.p50, lat.p99)
            elif self.last is not None:
                # Events arrive in bursts: an empty short window shows the last figures as such,
                # rather than flickering between numbers and nothing.
                lat.idle_s = now - self.last[0]
                lat.p50, lat.p99 = self.last[1], self.last[2]
        return lat

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- Redis snapshot


@dataclass
class Snapshot:
    """What one refresh read; `render` turns it into the screen."""

    taken_ms: int
    zones: list[dict] = field(default_factory=list)   # documents, sorted; {"zone_id", "_missing"} if unwritten
    updates_per_s: float | None = None
    latency: Latency = field(default_factory=Latency)
    error: str | None = None                          # Redis failed on this refresh (live mode keeps going)
    # the duty plan (CONTRACT §10): post and checkpoint documents by id, the phase in force
    posts: list[dict] = field(default_factory=list)
    checkpoints: list[dict] = field(default_factory=list)
    phase: dict | None = None


def _mask(url: str) -> str:
    """The URL without a password, for messages (any form, sentinel URLs too)."""
    return redacted_url(url)


_NUM = re.compile(r"(\d+)")


def zone_sort_key(doc: dict) -> tuple:
    """Venue rings first (core, inner, outer), then every other zone, then route segments, each
    route's in course order (`course/2` before `course/10`); by id, numbers compared as numbers."""
    zid = str(doc.get("zone_id", ""))
    natural = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _NUM.split(zid) if p)
    ring: Any = doc.get("ring")  # a string, or None/absent: sorts after the rings
    return (RING_ORDER.get(ring, len(RING_ORDER)), doc.get("kind") == "route", natural, zid)


def parse_docs(ids: list[str], raw: list[bytes | None]) -> list[dict]:
    docs = []
    for zid, val in zip(ids, raw, strict=True):
        if val is None:
            docs.append({"zone_id": zid, "_missing": True})
            continue
        try:
            doc = orjson.loads(val)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError:
            docs.append({"zone_id": zid, "_missing": True, "_bad": True})
            continue
        doc.setdefault("zone_id", zid)
        docs.append(doc)
    docs.sort(key=zone_sort_key)
    return docs


class Watcher:
    """Reads zone states from Redis and latency from the workers' /metrics."""

    def __init__(self, redis_url: str, metrics_urls: list[str], *, client=None,
                 latency: LatencySampler | None = None, timeout: float = 2.0):
        self.redis_url = redis_url
        if client is None:
            try:
                client = redisurl.sync_client(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
            except ValueError as exc:  # ConfigError (a bad sentinel URL) is a ValueError too
                raise WatchError(f"bad Redis URL {_mask(redis_url)!r}: {exc}") from exc
        self.r = client
        self.latency = latency or LatencySampler(metrics_urls, timeout=min(timeout, 0.5))
        self._last_added: tuple[float, int] | None = None

    def connect(self) -> None:
        """Fail early, clearly, when Redis is not there."""
        import redis

        try:
            self.r.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise RedisUnavailable(f"cannot reach Redis at {_mask(self.redis_url)} ({exc}); "
                                   "is it running (`make up`), and is ZONEWATCH_REDIS / --redis right?") from exc
        except redis.exceptions.RedisError as exc:
            raise WatchError(f"Redis at {_mask(self.redis_url)} refused us: {exc}") from exc

    def _entries_added(self) -> int | None:
        """Entries ever added to the updates stream (Redis >= 7), else its length."""
        import redis

        try:
            info = self.r.xinfo_stream(keys.ZONE_UPDATES)
        except redis.exceptions.ResponseError:      # no such key yet
            return 0
        added = info.get("entries-added")
        return int(added) if added is not None else int(info.get("length", 0))

    def read_zones(self) -> tuple[list[dict], float | None]:
        ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in self.r.smembers(keys.ZONES))
        raw = self.r.mget([keys.zone(z) for z in ids]) if ids else []
        added = self._entries_added()
        now = time.monotonic()
        rate = None
        if added is not None:
            if self._last_added is not None:
                t0, n0 = self._last_added
                if now > t0 and added >= n0:
                    rate = (added - n0) / (now - t0)
            self._last_added = (now, added)
        return parse_docs(ids, raw), rate

    def read_duty(self) -> tuple[list[dict], list[dict], dict | None]:
        """The duty plan's post and checkpoint documents (by id) and the phase in force."""
        out = []
        for index, key_of in ((keys.POSTS, keys.post), (keys.CHECKPOINTS, keys.checkpoint)):
            ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in self.r.smembers(index))
            docs = []
            for raw in (self.r.mget([key_of(i) for i in ids]) if ids else []):
                try:
                    doc = orjson.loads(raw) if raw else None
                except ValueError:
                    doc = None
                if isinstance(doc, dict):
                    docs.append(doc)
            out.append(docs)
        raw = self.r.get(keys.PHASE)
        try:
            phase = orjson.loads(raw) if raw else None
        except ValueError:
            phase = None
        return out[0], out[1], phase if isinstance(phase, dict) else None

    def sample(self) -> Snapshot:
        import redis

        snap = Snapshot(taken_ms=int(time.time() * 1000))
        try:
            snap.zones, snap.updates_per_s = self.read_zones()
            snap.posts, snap.checkpoints, snap.phase = self.read_duty()
        except (redis.exceptions.RedisError, OSError) as exc:
            snap.error = f"Redis at {_mask(self.redis_url)}: {exc}"
            self._last_added = None
        snap.latency = self.latency.sample()
        return snap

    def close(self) -> None:
        self.latency.close()
        try:
            self.r.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


# --------------------------------------------------------------------------- rendering


def _tz(name: str):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def fmt_age(seconds: float | None) -> Text:
    if seconds is None:
        return Text("–", style="dim")
    s = max(0.0, seconds)
    if s < 10:
        txt = f"{s:.1f}s"
    elif s < 120:
        txt = f"{s:.0f}s"
    elif s < 7200:
        txt = f"{s / 60:.0f}m"
    elif s < 172800:
        txt = f"{s / 3600:.0f}h"
    else:
        txt = f"{s / 86400:.0f}d"
    style = "" if s < 30 else ("yellow" if s < 300 else "red")
    return Text(txt, style=style)


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds >= 10:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms"


def level_cell(level: str | None) -> Text:
    if not level:
        return Text("–", style="dim")
    return Text(f" {level} ", style=LEVEL_STYLE.get(level, "magenta"))


def _get(doc: dict, *path, default=None):
    cur = doc
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return default
        cur = cur[p]
    return cur


def gps_age_s(doc: dict) -> float | None:
    """Seconds since the zone's last patrol fix from inside, on the stream clock of the document
    (CONTRACT §3 v3 `health.last_event_ts`; the document of a worker before v3 carries the age)."""
    last = _get(doc, "health", "last_event_ts", "gps")
    clock = doc.get("clock")
    if isinstance(last, int) and isinstance(clock, int):
        return max(0, clock - last) / 1000
    old = _get(doc, "health", "last_event_age_s", "gps")
    return old if isinstance(old, (int, float)) else None


def distrust(doc: dict) -> list[str]:
    """Why a zone's picture cannot be trusted, [] when it can: the wall's rule (docs/GATEWAY.md "Health on the wall",
    CONTRACT §3 `health`): a silent camera, units quiet in the zone while none is present, or no
    patrol fix from inside for more than GPS_STALE_S (none in 24 h, null, is not a reason alone:
    points and route segments often have no patrol inside)."""
    h = doc.get("health")
    if not isinstance(h, dict):
        return []
    out = []
    known, silent, quiet = h.get("cameras_known") or 0, h.get("cameras_silent") or 0, h.get("units_quiet") or 0
    if silent > 0:
        out.append(f"{silent}/{known} cameras silent")
    if quiet > 0 and not (_get(doc, "units", "present") or 0) > 0:
        out.append(f"{quiet} units quiet, none present")
    gps = gps_age_s(doc)
    if gps is not None and gps > GPS_STALE_S:
        out.append(f"no patrol fix for {gps / 60:.0f} min")
    return out


def health_cell(doc: dict) -> Text:
    """`✓`/`⚠`, silent/known cameras · quiet units (the wall's Health column), and how long no
    patrol fix came when that is a reason."""
    h = doc.get("health")
    if not isinstance(h, dict):
        return Text("–", style="dim")
    why = distrust(doc)
    t = Text()
    t.append("⚠ " if why else "✓ ", style="bold yellow" if why else "green")
    t.append(f"{h.get('cameras_silent', '–')}/{h.get('cameras_known', '–')}",
             style="bold yellow" if (h.get("cameras_silent") or 0) > 0 else "")
    t.append(" · ")
    t.append(str(h.get("units_quiet", "–")), style="bold yellow" if (h.get("units_quiet") or 0) > 0 else "")
    gps = gps_age_s(doc)
    if gps is not None and gps > GPS_STALE_S:
        t.append(f" · no fix {gps / 60:.0f}m", style="yellow")
    return t


def reach_cell(doc: dict) -> Text:
    """`reach.within_3m` as a percentage, red below REACH_LOW; `–` without reach."""
    r3 = _get(doc, "reach", "within_3m")
    if not isinstance(r3, (int, float)):
        return Text("–", style="dim")
    return Text(f"{r3 * 100:.0f}%", style="bold red" if r3 < REACH_LOW else "")


def _mmss(seconds) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "–"
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def response_cells(doc: dict) -> tuple[Text, Text, Text]:
    """The zone's `response` of the last 60 min (CONTRACT §3), as the wall shows it: the shares of
    its decided calls (reached within 5 min, or breached) reached within 1/3/5 min; its breaches,
    red when any; its p50 / p90 response in min:s. `–` where a figure does not exist yet."""
    r = doc.get("response")
    if not isinstance(r, dict) or not r:
        return Text("–", style="dim"), Text("–", style="dim"), Text("–", style="dim")

    def n(key: str) -> int:
        v = r.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    decided = n("within_5m") + n("breaches")
    shares = Text(" / ".join(f"{round(100 * n(k) / decided)}%" if decided else "–"
                             for k in ("within_1m", "within_3m", "within_5m")), style="" if decided else "dim")
    breaches = Text(str(n("breaches")), style="bold red" if n("breaches") else "dim")
    return shares, breaches, Text(f"{_mmss(r.get('p50_s'))} / {_mmss(r.get('p90_s'))}")


def ring_or_kind(doc: dict) -> Text:
    """The ring, or (dim) the kind for a zone without one: grid, district, route, other."""
    if doc.get("ring"):
        return Text(str(doc["ring"]))
    return Text(str(doc.get("kind") or "–"), style="dim")


def _pair(a, b) -> str:
    a = "–" if a is None else a
    b = "–" if b is None else b
    return f"{a} / {b}"


def latency_text(lat: Latency) -> Text:
    t = Text("e2e ")
    if lat.asked == 0:
        t.append("n/a", style="dim")
        return t
    if lat.answered == 0:
        t.append("n/a", style="yellow")
        t.append(" (no worker /metrics answered)", style="dim")
        return t
    if lat.warming:
        t.append("…", style="dim")
    elif lat.count <= 0 and lat.idle_s is not None:
        t.append(f"p50 {fmt_ms(lat.p50)} · p99 {fmt_ms(lat.p99)}", style="dim")
        t.append(f" (idle {lat.idle_s:.1f}s)", style="dim")
    elif lat.count <= 0:
        t.append("idle", style="dim")
    else:
        t.append(f"p50 {fmt_ms(lat.p50)} · p99 {fmt_ms(lat.p99)}", style="bold")
    if lat.asked > 1 or lat.answered < lat.asked:
        style = "dim" if lat.answered == lat.asked else "yellow"
        t.append(f" ({lat.answered}/{lat.asked} workers)", style=style)
    return t


def render(snap: Snapshot, tz_name: str = Settings.tz, note: str | Text | None = None,
           title: str = "zonewatch") -> Group:
    """The header line(s) and the zone table for one snapshot."""
    tz = _tz(tz_name)
    docs = snap.zones
    clocks = [d["clock"] for d in docs if isinstance(d.get("clock"), (int, float)) and not d.get("_missing")]
    clock = max(clocks) if clocks else None

    head = Text()
    head.append(f"{title}  ", style="bold")
    head.append("stream clock ")
    if clock is not None:
        local = datetime.fromtimestamp(clock / 1000, UTC).astimezone(tz)
        head.append(local.strftime("%Y-%m-%d %H:%M:%S %Z"), style="bold cyan")
        head.append(" (")
        head.append_text(fmt_age((snap.taken_ms - clock) / 1000))
        head.append(" behind now)")
    else:
        head.append("–", style="dim")
    head.append(f"  ·  {len(docs)} zones  ·  ")
    head.append("–" if snap.updates_per_s is None else f"{snap.updates_per_s:,.1f}", style="bold")
    head.append(" updates/s  ·  ")
    head.append_text(latency_text(snap.latency))

    counts = {lv: 0 for lv in LEVEL_ORDER}
    for d in docs:
        if d.get("level") in counts:
            counts[d["level"]] += 1
    levels = Text("levels ")
    for lv in LEVEL_ORDER:
        levels.append_text(level_cell(lv))
        levels.append(f" {counts[lv]}  ")
    now_local = datetime.fromtimestamp(snap.taken_ms / 1000, UTC).astimezone(tz)
    untrusted = sum(1 for d in docs if not d.get("_missing") and distrust(d))
    levels.append("⚠ ", style="bold yellow" if untrusted else "dim")
    levels.append(f"{untrusted} untrusted", style="bold yellow" if untrusted else "dim")
    levels.append(f"    now {now_local.strftime('%H:%M:%S %Z')}", style="dim")

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False, expand=False)
    table.add_column("zone", no_wrap=True, overflow="ellipsis", max_width=44)
    table.add_column("ring/\nkind", no_wrap=True)
    table.add_column("level", no_wrap=True, justify="center")
    table.add_column("today\ncalls", justify="right")
    table.add_column("today\nalerts", justify="right")
    table.add_column("5m\ncalls/alerts", justify="right", no_wrap=True)
    table.add_column("15m\ncalls (p1)", justify="right", no_wrap=True)
    table.add_column("units\npres/avail", justify="right", no_wrap=True)
    table.add_column("open\ninc", justify="right")
    table.add_column("60m ≤1/3/5 min\nof decided", justify="right", no_wrap=True)
    table.add_column("60m\nbreach", justify="right")
    table.add_column("60m resp\np50 / p90", justify="right", no_wrap=True)
    table.add_column("reach\n3 min", justify="right", no_wrap=True)
    table.add_column("health ✓/⚠\nsilent/known · quiet", no_wrap=True)
    table.add_column("ver", justify="right")
    table.add_column("age", justify="right")
    for d in docs:
        zone = Text(str(d.get("zone_id")), style="bold")
        if d.get("name"):
            zone.append(" " + str(d["name"]), style="dim")
        if d.get("_missing"):
            zone.append(" (unreadable)" if d.get("_bad") else " (not written yet)", style="italic yellow")
            table.add_row(zone, "", level_cell(None), *([Text("–", style="dim")] * 13))
            continue
        c15 = _get(d, "windows", "15m", "calls")
        p1 = _get(d, "windows", "15m", "calls_p1")
        c15_txt = Text("–" if c15 is None else str(c15))
        if p1:
            c15_txt.append(f" ({p1})", style="bold red")
        elif p1 is not None:
            c15_txt.append(" (0)", style="dim")
        age = (snap.taken_ms - d["clock"]) / 1000 if isinstance(d.get("clock"), (int, float)) else None
        table.add_row(
            zone,
            ring_or_kind(d),
            level_cell(d.get("level")),
            str(_get(d, "today", "calls", default="–")),
            str(_get(d, "today", "alerts", default="–")),
            _pair(_get(d, "windows", "5m", "calls"), _get(d, "windows", "5m", "alerts")),
            c15_txt,
            _pair(_get(d, "units", "present"), _get(d, "units", "available")),
            str(d.get("open_incidents", "–")),
            *response_cells(d),
            reach_cell(d),
            health_cell(d),
            str(d.get("version", "–")),
            fmt_age(age),
        )
    parts: list = [head, levels]
    if snap.error:
        parts.append(Text(f"! {snap.error} — retrying", style="bold red"))
    if note:
        parts.append(note if isinstance(note, Text) else Text(str(note), style="yellow"))
    if not docs and not snap.error:
        parts.append(Text(f"no zones registered in {keys.ZONES} yet: is a worker running?", style="yellow"))
    if docs:
        parts.append(table)
    if snap.posts or snap.checkpoints or snap.phase:
        parts += duty_parts(snap, tz)
    return Group(*parts)


POST_STYLE = {"manned": "bold green", "understaffed": "bold yellow", "empty": "bold red", "off": "dim"}


def duty_parts(snap: Snapshot, tz) -> list:
    """Under the zones: the phase in force, the posts and the checkpoints (CONTRACT §10)."""
    def at(ms) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).strftime("%H:%M:%S") if ms else "–"

    head = Text("duty  phase ", style="bold")
    ph = snap.phase or {}
    head.append(str(ph.get("name") or "none"), style="bold cyan")
    if ph.get("source") == "operator":
        head.append(f" (set by {ph.get('by')} at {at(ph.get('since'))})", style="yellow")
    elif ph:
        head.append(" (schedule" + (f", restored by {ph.get('by')}" if ph.get("by") else "") +
                    f", since {at(ph.get('since'))})", style="dim")
    counts = {s: sum(1 for p in snap.posts if p.get("status") == s) for s in POST_STYLE}
    head.append("  ·  posts ")
    for s, style in POST_STYLE.items():
        head.append(f"{s} {counts[s]} ", style=style if counts[s] else "dim")
    overdue = sum(1 for c in snap.checkpoints if c.get("overdue"))
    head.append(f" ·  checkpoints overdue {overdue}/{len(snap.checkpoints)}", style="bold red" if overdue else "dim")
    parts: list = [head]
    if snap.posts:
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False, expand=False)
        for col, kw in (("post", {"no_wrap": True, "max_width": 44}), ("status", {}),
                        ("units\npres/req", {"justify": "right"}), ("since", {}), ("unit ids", {"max_width": 40})):
            t.add_column(col, **kw)
        for p in snap.posts:
            status = str(p.get("status"))
            name = Text(str(p.get("post_id")), style="bold")
            name.append(" " + str(p.get("name", "")), style="dim")
            t.add_row(name, Text(status, style=POST_STYLE.get(status, "")), _pair(p.get("present"), p.get("required")),
                      at(p.get("since")), ", ".join(map(str, p.get("unit_ids") or [])))
        parts.append(t)
    if snap.checkpoints:
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False, expand=False)
        for col in ("checkpoint", "last visit", "by", "every", "overdue"):
            t.add_column(col, no_wrap=True)
        for c in snap.checkpoints:
            name = Text(str(c.get("checkpoint_id")), style="bold")
            name.append(" " + str(c.get("name", "")), style="dim")
            every = c.get("every_s")
            t.add_row(name, at(c.get("last_visit")), str(c.get("last_unit") or "–"),
                      "–" if every is None else f"{every} s",
                      Text(f"since {at(c.get('overdue_since'))}", style="bold red") if c.get("overdue")
                      else Text("no", style="dim"))
        parts.append(t)
    return parts


# --------------------------------------------------------------------------- loops


def watch_live(watcher: Watcher, *, interval: float = 0.5, tz_name: str = Settings.tz,
               console: Console | None = None, stop: threading.Event | None = None,
               check: Callable[[], str | Text | None] | None = None, title: str = "zonewatch") -> None:
    """Refresh the table every `interval` s until `stop` is set (or KeyboardInterrupt).

    `check()` runs before each refresh: it may return a note for the screen, or raise to leave
    the loop (the demo uses it to notice a subprocess that died).
    """
    stop = stop or threading.Event()
    console = console or Console()
    watcher.sample()  # baseline for the rates and latency deltas
    with Live(console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False) as live:
        while not stop.is_set():
            t0 = time.monotonic()
            note = check() if check else None
            live.update(render(watcher.sample(), tz_name, note, title), refresh=True)
            stop.wait(max(0.05, interval - (time.monotonic() - t0)))


def watch_once(watcher: Watcher, *, interval: float = 0.5, tz_name: str = Settings.tz,
               console: Console | None = None) -> Snapshot:
    """Two samples `interval` apart (so rate and latency mean what they mean live); prints the second."""
    console = console or Console()
    watcher.sample()
    if interval > 0:
        time.sleep(interval)
    snap = watcher.sample()
    console.print(render(snap, tz_name))
    return snap


def default_metrics_url() -> str:
    port = os.environ.get("ZONEWATCH_WEB_PORT") or DEFAULT_WEB_PORT
    return f"http://127.0.0.1:{port}/metrics"


def add_parser(sub) -> None:
    p = sub.add_parser("watch", help="live table of all zone states in Redis",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--redis", metavar="URL", help="Redis URL (default ZONEWATCH_REDIS, redis://127.0.0.1:6379/0)")
    p.add_argument("--interval", type=float, default=0.5, metavar="S", help="refresh period in seconds (default 0.5)")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument("--metrics", action="append", metavar="URL",
                   help="a worker's /metrics for the e2e latency (repeat for several workers; "
                        f"default {default_metrics_url()})")
    p.set_defaults(func=run)


def run(args) -> int:
    redis_url = args.redis or redis_url_from_env(Settings.redis)
    tz_name = os.environ.get("ZONEWATCH_TZ") or Settings.tz
    if not args.interval > 0:
        print("zonewatch watch: error: --interval must be > 0", file=sys.stderr)
        return 2
    watcher = None
    try:
        watcher = Watcher(redis_url, args.metrics or [default_metrics_url()])
        watcher.connect()
        if args.once:
            snap = watch_once(watcher, interval=args.interval, tz_name=tz_name)
            return 1 if snap.error else 0
        watch_live(watcher, interval=args.interval, tz_name=tz_name)
    except (WatchError, RedisUnavailable) as exc:
        print(f"zonewatch watch: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if watcher is not None:
            watcher.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zonewatch.watch")
    sub = p.add_subparsers()
    add_parser(sub)
    return run(p.parse_args(["watch", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
