"""Is the picture trustworthy? Camera status reports, cameras that go silent or offline, and patrol
units whose radios go quiet, laid over a scenario's events (CONTRACT §1 `camera.status`, §3 health).

* every camera's video platform reports it on `camera.status` every `status_every_s` (5 min,
  ±10 %, each camera at its own phase), with its position and `online: true`;
* now and then a camera goes **silent** — no status, no alerts — for 35–90 min (longer than the
  worker's 30 min `ZONEWATCH_CAMERA_SILENT_S`, so the zone's `cameras_silent` counts it), then
  comes back; on average once every 12 h per camera;
* now and then the platform reports a camera **offline** (`online: false`) for 10–60 min: the
  reports go on, the camera raises no alerts; on average once a day per camera;
* now and then a unit goes **quiet** for 3–20 min (between the 120 s after which it is no longer
  present and the 30 min after which it no longer counts as quiet): it keeps moving, and being
  dispatched, but none of its fixes arrive; on average once every 8 h per unit.

Every camera and unit draws its episodes from a random stream of its own (seeded by the scenario's
seed and its id), so the result is deterministic and the scenario's own events are untouched: the
layer only adds status reports and drops what a silent camera or a quiet unit would have sent.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator

from .engine import ALERTS, GPS, STATUS, Simulation

STATUS_EVERY_S = 300.0
STATUS_JITTER = 0.10
MIN_MS = 60_000
HOUR_MS = 3_600_000
#: (mean time between episodes, shortest and longest episode) per kind of episode
SILENT = (12 * HOUR_MS, 35 * MIN_MS, 90 * MIN_MS)
OFFLINE = (24 * HOUR_MS, 10 * MIN_MS, 60 * MIN_MS)
QUIET = (8 * HOUR_MS, 3 * MIN_MS, 20 * MIN_MS)


class Episodes:
    """Alternating ordinary and down periods of one camera or unit, drawn lazily: `down(t)` for
    non-decreasing t."""

    __slots__ = ("rng", "mean", "lo", "hi", "start", "end")

    def __init__(self, rng: random.Random, t0: int, mean_ms: float, lo_ms: int, hi_ms: int):
        self.rng, self.mean, self.lo, self.hi = rng, mean_ms, lo_ms, hi_ms
        self.start = t0 + int(rng.expovariate(1.0 / mean_ms))
        self.end = self.start + rng.randint(lo_ms, hi_ms)

    def down(self, t: int) -> bool:
        while t >= self.end:
            self.start = self.end + int(self.rng.expovariate(1.0 / self.mean))
            self.end = self.start + self.rng.randint(self.lo, self.hi)
        return t >= self.start


class Health:
    """The health layer of one simulation: `apply(events)` merges the status reports in `ts` order
    and drops the alerts of silent or offline cameras and the fixes of quiet units."""

    def __init__(self, sim: Simulation, status_every_s: float = STATUS_EVERY_S, silent=SILENT,
                 offline=OFFLINE, quiet=QUIET):
        self.seed, self.t0, self.end = sim.seed, sim.start_ms, sim.end_ms
        self.every_ms = status_every_s * 1000.0
        self.quiet_params = quiet
        self.cams = sim.cameras()
        self.cam_index = {c[0]: i for i, c in enumerate(self.cams)}
        self.silent = [Episodes(self._rng("silent", c[0]), self.t0, *silent) for c in self.cams]
        self.offline = [Episodes(self._rng("offline", c[0]), self.t0, *offline) for c in self.cams]
        self.sched = [self._rng("status", c[0]) for c in self.cams]
        self.heap = [(self.t0 + int(r.random() * self.every_ms), i) for i, r in enumerate(self.sched)]
        heapq.heapify(self.heap)
        self.quiet: dict[str, Episodes] = {}

    def _rng(self, what: str, ident: str) -> random.Random:
        return random.Random(f"health/{self.seed}/{what}/{ident}")

    def unit_quiet(self, unit_id: str, t: int) -> bool:
        ep = self.quiet.get(unit_id)
        if ep is None:
            ep = self.quiet[unit_id] = Episodes(self._rng("quiet", unit_id), self.t0, *self.quiet_params)
        return ep.down(t)

    def camera_down(self, camera_id: str, t: int) -> bool:
        """Silent or offline at t: the camera raises no alerts."""
        i = self.cam_index.get(camera_id)
        return i is not None and (self.silent[i].down(t) or self.offline[i].down(t))

    def _reports(self, until: int) -> Iterator[tuple[str, dict]]:
        """The status reports due up to `until`, in time order."""
        heap = self.heap
        while heap and heap[0][0] <= until:
            t, i = heap[0]
            rng = self.sched[i]
            heapq.heapreplace(heap, (t + int(self.every_ms * (1.0 + rng.uniform(-STATUS_JITTER, STATUS_JITTER))), i))
            silent = self.silent[i].down(t)
            offline = self.offline[i].down(t)
            if not silent:
                cam_id, lat, lon = self.cams[i]
                yield STATUS, {"camera_id": cam_id, "ts": t, "lat": lat, "lon": lon, "online": not offline}

    def apply(self, events: Iterable[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
        for topic, ev in events:
            t = ev["ts"]
            if self.heap and self.heap[0][0] <= t:
                yield from self._reports(t)
            if topic == GPS:
                if self.unit_quiet(ev["unit_id"], t):
                    continue
            elif topic == ALERTS and self.camera_down(ev["camera_id"], t):
                continue
            yield topic, ev
        if self.end is not None:  # the scenario ran to its end: the reports up to it
            yield from self._reports(self.end)
