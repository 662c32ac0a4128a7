"""Pure arithmetic of the benchmark (no I/O): rates from sampled counters, min/median/max over
runs, Redis command counts from INFO commandstats and from a MONITOR sample.

Redis counts a command that a Lua script calls (`redis.call`) in `INFO commandstats` and in
`total_commands_processed` exactly as one a client sent, so neither can tell what the worker sent
from what its script ran. MONITOR can: it shows each command with the client that sent it, and a
script's commands with the client `lua`. `MonitorTally` counts a MONITOR stream by (client,
command) and the SETs of zone documents; `split_commands` applies a sample's share of top-level
calls per command to the commandstats deltas of an unperturbed window.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping

LUA = "lua"   # the client name MONITOR shows for commands run by a script


# -- counters over time ------------------------------------------------------------------------
def crossing(samples: list[tuple[float, float]], level: float) -> float | None:
    """Time at which the sampled counter reached `level` (linear between samples)."""
    prev = None
    for t, c in samples:
        if c >= level:
            if prev is None or c == prev[1]:
                return t
            t0, c0 = prev
            return t0 + (t - t0) * (level - c0) / (c - c0)
        prev = (t, c)
    return None


def rate_between(samples, n: float, lo: float = 0.05, hi: float = 0.95) -> float | None:
    """Events/s between the moments the counter passed lo*n and hi*n."""
    t_lo, t_hi = crossing(samples, lo * n), crossing(samples, hi * n)
    if t_lo is None or t_hi is None or t_hi <= t_lo:
        return None
    return (hi - lo) * n / (t_hi - t_lo)


def nearest(samples: list[tuple[float, object]], t: float):
    """The sample (time, value) taken closest to time `t` (None when there are none)."""
    return min(samples, key=lambda s: abs(s[0] - t)) if samples else None


# -- runs -------------------------------------------------------------------------------------
def spread(values: Iterable) -> dict:
    """min / median / max of the numbers among `values` (None and non-numbers are skipped: a run
    that did not produce the figure); `n` how many counted, `of` how many were given."""
    given = list(values)
    nums = [v for v in given if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not nums:
        return {"min": None, "median": None, "max": None, "n": 0, "of": len(given)}
    return {"min": min(nums), "median": statistics.median(nums), "max": max(nums), "n": len(nums),
            "of": len(given)}


def count_true(values: Iterable) -> tuple[int, int]:
    """(how many are True, how many are not None)."""
    vals = [v for v in values if v is not None]
    return sum(1 for v in vals if v), len(vals)


def per(n: float | None, d: float | None) -> float | None:
    """n / d, or None when either is missing or d is 0."""
    if n is None or not d:
        return None
    return n / d


# -- Redis INFO commandstats ------------------------------------------------------------------
def calls_from_info(info: Mapping) -> dict[str, int]:
    """{command: calls} from a parsed `INFO commandstats` (redis-py: {'cmdstat_set': {'calls': 3,
    ...}}) or from its raw text."""
    if isinstance(info, (str, bytes)):
        info = parse_info_text(info.decode() if isinstance(info, bytes) else info)
    out = {}
    for k, v in info.items():
        if k.startswith("cmdstat_"):
            calls = v.get("calls") if isinstance(v, Mapping) else None
            if calls is not None:
                out[k[len("cmdstat_"):].lower()] = int(calls)
    return out


def parse_info_text(text: str) -> dict:
    """The `INFO` reply as text -> {field: value}; `a=1,b=2` values become dicts."""
    out: dict = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        if "=" in v:
            d = {}
            for part in v.split(","):
                if "=" in part:
                    a, b = part.split("=", 1)
                    d[a] = _num(b)
            out[k] = d
        else:
            out[k] = _num(v)
    return out


def _num(s: str):
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


def commands_delta(before: Mapping[str, int], after: Mapping[str, int],
                   own: Mapping[str, int] | None = None) -> dict[str, int]:
    """Calls per command between two commandstats snapshots, less the calls the bench itself made
    in between (`own`, e.g. {'info': 1}); commands with no calls left are dropped."""
    own = own or {}
    out = {}
    for cmd in set(before) | set(after):
        d = after.get(cmd, 0) - before.get(cmd, 0) - own.get(cmd, 0)
        if d:
            out[cmd] = d
    return out


# -- Redis MONITOR ----------------------------------------------------------------------------
# +1795988314.069149 [9 127.0.0.1:55174] "eval" "..." "0"     (a client's command)
# +1795988314.069155 [9 lua] "set" "zw:zone:x" "{...}"          (a command a script ran)
_MON = re.compile(rb'^\+?[0-9.]+ \[[0-9]+ ([^\]]+)\] "([^"]*)"(?: "([^"\\]{0,200}))?')


class MonitorTally:
    """Counts a MONITOR stream: commands by (client, command), and SETs whose key starts with
    `zone_prefix` by client. Feed it the raw bytes as they arrive (any chunking)."""

    def __init__(self, zone_prefix: str):
        self.zone_prefix = zone_prefix.encode()
        self.by_client: Counter = Counter()      # (client, command) -> calls
        self.zone_sets: Counter = Counter()      # client -> SET zw:zone:* calls
        self.lines = 0
        self.unparsed = 0
        self.bytes = 0
        self._rest = b""

    def feed(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        data = self._rest + chunk
        lines = data.split(b"\r\n")
        self._rest = lines.pop()
        for line in lines:
            self.line(line)

    def line(self, line: bytes) -> None:
        if not line or line == b"+OK":
            return
        m = _MON.match(line)
        if m is None:
            self.unparsed += 1
            return
        self.lines += 1
        client, cmd, key = m.group(1).decode(), m.group(2).decode().lower(), m.group(3)
        self.by_client[(client, cmd)] += 1
        if cmd == "set" and key is not None and key.startswith(self.zone_prefix):
            self.zone_sets[client] += 1

    def clients(self) -> set[str]:
        return {c for c, _ in self.by_client if c != LUA}

    def grouped(self, owner: Mapping[str, str]) -> dict[str, dict[str, int]]:
        """{who: {command: calls}}, clients renamed by `owner` (address -> 'worker', 'gateway', ...;
        unknown addresses -> 'other'); script commands under 'lua'."""
        out: dict[str, dict[str, int]] = {}
        for (client, cmd), n in self.by_client.items():
            who = LUA if client == LUA else owner.get(client, "other")
            d = out.setdefault(who, {})
            d[cmd] = d.get(cmd, 0) + n
        return out

    def zone_sets_by(self, owner: Mapping[str, str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for client, n in self.zone_sets.items():
            who = LUA if client == LUA else owner.get(client, "other")
            out[who] = out.get(who, 0) + n
        return out


def top_level_share(grouped: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Per command, the share of its calls that a client sent (not a script) in a MONITOR sample."""
    total: Counter = Counter()
    top: Counter = Counter()
    for who, cmds in grouped.items():
        for cmd, n in cmds.items():
            total[cmd] += n
            if who != LUA:
                top[cmd] += n
    return {cmd: top[cmd] / n for cmd, n in total.items() if n}


def split_commands(delta: Mapping[str, int], share: Mapping[str, float]) -> dict:
    """Split commandstats deltas into sent by clients (top-level) and run by scripts, with each
    command's top-level share from a MONITOR sample. Commands the sample never saw cannot be
    split: they are counted as top-level and also reported as `unclassified` (an upper bound)."""
    top = nested = unclassified = 0.0
    for cmd, n in delta.items():
        if cmd in share:
            top += n * share[cmd]
            nested += n * (1.0 - share[cmd])
        else:
            top += n
            unclassified += n
    return {"top_level": top, "in_scripts": nested, "unclassified": unclassified, "all": float(sum(delta.values()))}


def script_calls(delta: Mapping[str, int]) -> int:
    """EVAL/EVALSHA/FCALL calls in a commandstats delta (always top-level: a script cannot call them)."""
    return sum(n for cmd, n in delta.items() if cmd in ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall",
                                                         "fcall_ro"))
