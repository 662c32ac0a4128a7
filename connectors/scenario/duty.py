"""The duty plan kept (and not quite kept) by units of its own, laid over a scenario's events
(CONTRACT §10, issue 26; `zonewatch simulate --plan FILE`).

* **Posts**: each post gets as many units as its largest requirement, of the forces it counts
  (police first, then auxiliary 辅警 and security guards when the post counts them), plus one
  volunteer (群防群治) where the post does not count volunteers — on the wall it stands there and
  does not fill the post. They stand within half the post's radius, a fix every 15-25 s; now and
  then one leaves for 2-10 min (a call nearby, a break, on average once an hour) walking 2-4 radii
  away, and comes back: the post goes understaffed, sometimes empty, and manned again.
* **Checkpoints**: sweep units (motorcycles, 7-9 m/s, `force` police) ride a loop through every
  checkpoint in nearest-neighbour order, stopping 20-60 s at each; as many as the loop's length
  over the shortest required interval, so that a sweep is mostly on time, and late when a rider
  is held up at a checkpoint (4-12 min, one stop in five): the checkpoint after it goes overdue.
* **A phase change mid-run**: an operator ("模拟值班长") sets another phase than the schedule's
  (the one requiring most units at the posts) `phase_after_s` after the start (default: halfway
  through `--duration`, or two hours) for 15 minutes, then returns to the schedule: two records
  on plan.commands, the record `POST /plan/phase` writes.

Every unit and rider draws from a random stream of its own (seeded by the scenario's seed and its
id), so the scenario's own events are untouched and the layer is deterministic.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from contract import topics
from contract.plan import Plan, Post, phase_command

from .engine import GPS, Simulation

MIN_MS = 60_000
POST_FIX_MS = (15_000, 25_000)
LEAVE_EVERY_MS = 60 * MIN_MS          # mean time between a post unit's absences
LEAVE_MS = (2 * MIN_MS, 10 * MIN_MS)
SWEEP_FIX_MS = (8_000, 12_000)
SWEEP_SPEED = (7.0, 9.0)              # m/s
SWEEP_STOP_MS = (20_000, 60_000)
HELD_UP = (0.2, 4 * MIN_MS, 12 * MIN_MS)   # probability of a long stop at a checkpoint, its range
OPERATOR = "模拟值班长"
OPERATOR_PHASE_MS = 15 * MIN_MS
PLAN_COMMANDS = topics.PLAN_COMMANDS


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular metres between two (lat, lon): exact enough within a city."""
    lat = math.radians((a[0] + b[0]) / 2)
    return math.hypot((b[0] - a[0]) * 110_950.0, (b[1] - a[1]) * 111_320.0 * math.cos(lat))


def _offset(p: tuple[float, float], dx: float, dy: float) -> tuple[float, float]:
    return (p[0] + dy / 110_950.0, p[1] + dx / (111_320.0 * math.cos(math.radians(p[0]))))


@dataclass
class PostUnit:
    uid: str
    force: str
    post: Post
    rng: random.Random
    spot: tuple[float, float]       # where it stands
    away: tuple[float, float]       # where it goes when it leaves
    away_from: int = 0
    away_until: int = 0


@dataclass
class Rider:
    uid: str
    rng: random.Random
    route: list[tuple[float, float]]
    t: int                           # when the legs planned so far end
    i: int = 0                       # checkpoints passed
    legs: list[tuple[int, int, tuple[float, float], tuple[float, float]]] = field(default_factory=list)


class DutyLayer:
    """The duty layer of one simulation: `apply(events)` merges its fixes and the operator's
    commands in `ts` order."""

    def __init__(self, sim: Simulation, plan: Plan, phase_after_s: float | None = None):
        self.plan = plan
        self.seed = sim.seed
        self.t0, self.end = sim.start_ms, sim.end_ms
        self.tag = sim.tag
        # (ts, kind, index): 0 post unit, 1 sweep rider, 2 command
        self.heap: list[tuple[int, int, int]] = []
        self.posts: list[PostUnit] = []
        for post in plan.posts:
            forces: list[str] = [f for f in ("police", "auxiliary", "security") if f in post.forces] \
                or list(post.forces)
            n = max(post.required.values(), default=0)
            crew = [forces[k % len(forces)] for k in range(n)]
            if "volunteer" not in post.forces:
                crew.append("volunteer")
            for k, force in enumerate(crew):
                uid = f"DUTY-{post.post_id}-{k + 1}"
                rng = random.Random(f"duty/{self.seed}/{uid}")
                centre = (post.lat, post.lon)
                u = PostUnit(uid, force, post, rng, _offset(centre, *self._polar(rng, post.radius_m * 0.5)),
                             _offset(centre, *self._polar(rng, post.radius_m * rng.uniform(2, 4), at_least=True)))
                u.away_from = self.t0 + int(rng.expovariate(1 / LEAVE_EVERY_MS))
                u.away_until = u.away_from + rng.randint(*LEAVE_MS)
                self.posts.append(u)
                self.heap.append((self.t0 + rng.randint(0, POST_FIX_MS[1]), 0, len(self.posts) - 1))
        self.riders: list[Rider] = []
        cps = list(plan.checkpoints)
        if cps:
            route = self._loop([(c.lat, c.lon) for c in cps])
            length = sum(_metres(a, b) for a, b in zip(route, route[1:] + route[:1], strict=True))
            shortest = min((v for c in cps for v in c.every_s.values()), default=1800)
            loop_ms = length / sum(SWEEP_SPEED) * 2 * 1000 + len(route) * sum(SWEEP_STOP_MS) / 2
            n = max(1, math.ceil(loop_ms / (shortest * 1000)))
            for k in range(n):
                uid = f"SWEEP-{k + 1}"
                rng = random.Random(f"duty/{self.seed}/{uid}")
                # riders spread over the loop: each starts at another checkpoint
                start = k * len(route) // n
                self.riders.append(Rider(uid, rng, route[start:] + route[:start], self.t0))
                self.heap.append((self.t0 + rng.randint(0, SWEEP_FIX_MS[1]), 1, len(self.riders) - 1))
        self.commands = []
        if plan.phases:
            after_ms = int((phase_after_s if phase_after_s is not None else
                            (self.end - self.t0) / 2000 if self.end is not None else 7200) * 1000)
            at = self.t0 + after_ms
            scheduled = next((p.name for p in plan.phases if p.start <= at < p.end), None)
            others = [n for n in plan.phase_names if n != scheduled] or list(plan.phase_names)
            name = max(others, key=lambda n: (sum(p.required.get(n, 0) for p in plan.posts), -others.index(n)))
            self.commands = [phase_command(f"sim-{self.tag}-1", name, OPERATOR, at),
                             phase_command(f"sim-{self.tag}-2", None, OPERATOR, at + OPERATOR_PHASE_MS)]
            # sent when due, as an operator's POST /plan/phase would be (the feeds' watermark is behind it)
            self.heap += [(c["ts"], 2, i) for i, c in enumerate(self.commands)]
        heapq.heapify(self.heap)

    @staticmethod
    def _polar(rng: random.Random, r: float, at_least: bool = False) -> tuple[float, float]:
        d = r if at_least else r * math.sqrt(rng.random())
        a = rng.uniform(0, 2 * math.pi)
        return d * math.cos(a), d * math.sin(a)

    @staticmethod
    def _loop(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """Nearest-neighbour order from the first point."""
        left, out = points[1:], [points[0]]
        while left:
            nxt = min(left, key=lambda p: _metres(out[-1], p))
            left.remove(nxt)
            out.append(nxt)
        return out

    def _post_fix(self, i: int, t: int) -> dict:
        u = self.posts[i]
        rng = u.rng
        if t >= u.away_until:   # the next absence
            u.away_from = t + int(rng.expovariate(1 / LEAVE_EVERY_MS))
            u.away_until = u.away_from + rng.randint(*LEAVE_MS)
        lat, lon = _offset(u.away if u.away_from <= t < u.away_until else u.spot, rng.gauss(0, 3), rng.gauss(0, 3))
        return {"unit_id": u.uid, "ts": t, "lat": round(lat, 6), "lon": round(lon, 6), "status": "available",
                "kind": "foot", "force": u.force}

    def _rider_fix(self, i: int, t: int) -> dict:
        r = self.riders[i]
        rng, route, legs = r.rng, r.route, r.legs
        while not legs or legs[-1][1] < t:   # plan the next legs: ride to the next checkpoint, stop
            here = route[r.i % len(route)]
            there = route[(r.i + 1) % len(route)]
            t_at = r.t + int(_metres(here, there) / rng.uniform(*SWEEP_SPEED) * 1000)
            stop = rng.randint(*SWEEP_STOP_MS)
            if rng.random() < HELD_UP[0]:
                stop = rng.randint(int(HELD_UP[1]), int(HELD_UP[2]))
            legs.append((r.t, t_at, here, there))
            legs.append((t_at, t_at + stop, there, there))
            r.t, r.i = t_at + stop, r.i + 1
            del legs[:-4]
        t0, t1, a, b = next(leg for leg in legs if leg[0] <= t <= leg[1])
        f = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
        lat, lon = a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
        return {"unit_id": r.uid, "ts": t, "lat": round(lat, 6), "lon": round(lon, 6), "status": "available",
                "kind": "motorcycle", "force": "police"}

    def _due(self, until: int) -> Iterator[tuple[str, dict]]:
        heap = self.heap
        while heap and heap[0][0] <= until:
            t, kind, i = heap[0]
            if kind == 2:
                heapq.heappop(heap)
                yield PLAN_COMMANDS, self.commands[i]
            elif kind == 0:
                heapq.heapreplace(heap, (t + self.posts[i].rng.randint(*POST_FIX_MS), 0, i))
                yield GPS, self._post_fix(i, t)
            else:
                heapq.heapreplace(heap, (t + self.riders[i].rng.randint(*SWEEP_FIX_MS), 1, i))
                yield GPS, self._rider_fix(i, t)

    def apply(self, events: Iterable[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
        for topic, ev in events:
            if isinstance(ev, dict) and type(ev.get("ts")) is int and self.heap and self.heap[0][0] <= ev["ts"]:
                yield from self._due(ev["ts"])
            yield topic, ev
        if self.end is not None:
            yield from self._due(self.end)
