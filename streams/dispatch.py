"""Dispatch recommendation (`nearest_units` of incidents.enriched, README "Incidents").

Up to 3 available units per call, nearest first: GEOSEARCH over `zw:units:available`, a global
index of live positions written by every worker's ingest, then freshness and kind from
`zw:unit-info`, ETA by contract.response.eta_s.
"""

from __future__ import annotations

import logging

import orjson

from contract.response import eta_s
from contract.settings import Settings

from . import metrics
from .store import RedisStore

log = logging.getLogger("zonewatch.dispatch")

RECOMMEND_RADIUS_M = 20_000
RECOMMENDED = 3
#: candidates asked of Redis per round, and the rounds' radii: stale or busy units are filtered out
#: *before* the nearest three are taken, so a crowd of dead devices cannot hide a live unit
ROUNDS = ((2_000, 50), (20_000, 500))


class Dispatcher:
    def __init__(self, settings: Settings, store: RedisStore):
        self.s = settings
        self.store = store

    async def recommend(self, records: list[dict]) -> None:
        """Set `nearest_units` on each enriched record (left as it is when Redis fails: no
        recommendation beats no enriched record)."""
        todo = list(records)
        for radius, count in ROUNDS:
            try:
                found, info = await self.store.nearby_available([(r["lat"], r["lon"]) for r in todo], radius, count)
            except Exception as exc:
                metrics.REDIS_ERRORS.inc()
                log.warning("dispatch recommendation failed: %s", exc)
                return
            short = []
            for r, hits in zip(todo, found, strict=True):
                out = []
                for unit, dist in hits:
                    raw = info.get(unit)
                    if raw is None:
                        continue
                    meta = orjson.loads(raw)
                    if meta["status"] != "available" or meta["ts"] < r["ts"] - self.s.unit_stale_ms:
                        continue
                    out.append({"unit_id": unit.decode(), "kind": meta["kind"], "distance_m": round(dist, 1),
                                "eta_s": eta_s(dist, meta["kind"])})
                    if len(out) == RECOMMENDED:
                        break
                r["nearest_units"] = out
                if len(out) < RECOMMENDED and len(hits) == count:
                    short.append(r)  # the round's candidates ran out before three fresh ones: widen
            todo = short
            if not todo:
                return
