"""The processing-time part of a dispatch recommendation (`nearest_units`, docs/DESIGN.md
"Dispatch recommendation").

The recommendation itself is decided by the incidents stage (streams/incidents.py) from the
units' positions at the call's ts, exactly, within DISPATCH_EXACT_M of the call. When that finds
fewer than MAX_RECOMMENDED units, or the call was consumed after the grace (its positions are no
longer held), the list is completed here with farther units: GEOSEARCH over
`zw:units:available`, a global index of the latest positions written by every worker's ingest,
then freshness and kind from `zw:unit-info`, ETA by contract.response.eta_s. These positions are
the units' latest at processing time, not as of the call's ts: approximate, and only ever beyond
the exact part (farther than the distance the incidents stage searched exactly).
"""

from __future__ import annotations

import logging

import orjson

from contract.response import MAX_RECOMMENDED, eta_s
from contract.settings import Settings

from . import metrics
from .store import RedisStore

log = logging.getLogger("zonewatch.dispatch")

#: candidates asked of Redis per round, and the rounds' radii: stale or busy units are filtered out
#: *before* the nearest are taken, so a crowd of dead devices cannot hide a live unit
ROUNDS = ((2_000, 50), (20_000, 500))


class Dispatcher:
    def __init__(self, settings: Settings, store: RedisStore):
        self.s = settings
        self.store = store

    async def recommend(self, todo: list[tuple[dict, float]]) -> None:
        """Complete `nearest_units` of each (enriched record, beyond_m) with available, fresh units
        farther than beyond_m, nearest first, up to MAX_RECOMMENDED in all (a record is left as
        it is when Redis fails: the exact part beats no enriched record)."""
        todo = [(r, beyond) for r, beyond in todo if len(r["nearest_units"]) < MAX_RECOMMENDED]
        for radius, count in ROUNDS:
            # a round whose radius does not reach beyond the exact part cannot add: the next one
            now = [(r, beyond) for r, beyond in todo if radius > beyond]
            later = [(r, beyond) for r, beyond in todo if radius <= beyond]
            if not now:
                continue
            try:
                found, info = await self.store.nearby_available([(r["lat"], r["lon"]) for r, _b in now],
                                                                radius, count)
            except Exception as exc:
                metrics.REDIS_ERRORS.inc()
                log.warning("dispatch recommendation (processing-time part) failed: %s", exc)
                return
            short = []
            for (r, beyond), hits in zip(now, found, strict=True):
                # a wider round sees the narrower one's units again (GEOSEARCH is nearest first):
                # what it adds lies beyond them
                out = list(r["nearest_units"])
                known = {u["unit_id"] for u in out}
                for unit, dist in hits:
                    if dist <= beyond:
                        continue
                    raw = info.get(unit)
                    if raw is None:
                        continue
                    meta = orjson.loads(raw)
                    uid = unit.decode()
                    if meta["status"] != "available" or meta["ts"] < r["ts"] - self.s.unit_stale_ms or uid in known:
                        continue
                    out.append({"unit_id": uid, "kind": meta["kind"], "distance_m": round(dist, 1),
                                "eta_s": eta_s(dist, meta["kind"])})
                    if len(out) == MAX_RECOMMENDED:
                        break
                r["nearest_units"] = out
                if len(out) < MAX_RECOMMENDED:
                    short.append((r, beyond))  # too few fresh available units that close: widen
            todo = later + short
            if not todo:
                return
