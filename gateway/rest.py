"""The request/response endpoints. Each is a plain async function of the request; what they share
comes from `gateway.context.ctx(request)`. All but /, /healthz and /metrics need a bearer token."""

from __future__ import annotations

import asyncio
import functools
import math

import orjson
from prometheus_client import generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contract import keys
from gateway.auth import unauthorized
from gateway.context import ctx
from gateway.metrics import REGISTRY

MAX_RADIUS_M = 100_000.0
MAX_UNITS = 10_000
#: Redis GEO indexes latitudes up to ±85.05112878 (Web Mercator); no unit can be stored beyond, and
#: GEOSEARCH refuses a centre there, so such a `near` is the client's error (400), not Redis' (503)
GEO_LAT_LIMIT = 85.05112878


def protected(handler):
    """The handler, answered with 401 unless the request carries a bearer token."""

    @functools.wraps(handler)
    async def wrapped(request: Request):
        if not ctx(request).tokens.allows(request):
            return unauthorized()
        return await handler(request)

    return wrapped


def json_bytes(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def error(status: int, msg: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": msg}, status_code=status, headers=headers)


async def wall(request: Request):
    return Response(ctx(request).wall_html, media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


async def healthz(request: Request):
    c = ctx(request)
    try:
        await asyncio.wait_for(c.redis.ping(), 2.0)
        ok = True
    except Exception:
        ok = False
    body = {"status": "ok" if ok else "redis unreachable", "redis": ok,
            "clients": len(c.hub.subs), "last_update_id": c.hub.last_id}
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request):
    return Response(generate_latest(REGISTRY), media_type="text/plain; version=0.0.4; charset=utf-8")


@protected
async def zones(request: Request):
    redis = ctx(request).redis
    ids = sorted(m.decode() for m in await redis.smembers(keys.ZONES))
    docs = [d for d in (await redis.mget([keys.zone(z) for z in ids]) if ids else []) if d]
    return json_bytes(b"[" + b",".join(docs) + b"]")


@protected
async def zone_one(request: Request):
    zid = request.path_params["zone_id"]
    doc = await ctx(request).redis.get(keys.zone(zid))
    if doc is None:
        return error(404, f"no zone {zid!r}")
    return json_bytes(doc)


@protected
async def zones_geojson(request: Request):
    return Response(ctx(request).geojson, media_type="application/geo+json", headers={"Cache-Control": "no-cache"})


@protected
async def units(request: Request):
    q = request.query_params
    try:
        lat_s, lon_s = (q.get("near") or "").split(",")
        lat, lon = float(lat_s), float(lon_s)
        radius = float(q.get("radius", "1000"))
        limit = int(q.get("limit", "1000"))
    except ValueError:
        return error(400, "near=LAT,LON is required; radius (metres) and limit must be numbers")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not math.isfinite(lat + lon):
        return error(400, "near: lat must be -90..90 and lon -180..180")
    if abs(lat) > GEO_LAT_LIMIT:
        return error(400, f"near: lat must be within ±{GEO_LAT_LIMIT} (the range of Redis GEO; no unit can be "
                          "stored beyond it)")
    if not (0 < radius <= MAX_RADIUS_M) or not 1 <= limit <= MAX_UNITS:
        return error(400, f"radius must be in (0, {MAX_RADIUS_M:.0f}] metres and limit 1..{MAX_UNITS}")
    found = await ctx(request).redis.geosearch(keys.UNITS, longitude=lon, latitude=lat, radius=radius, unit="m",
                                               sort="ASC", count=limit, withdist=True, withcoord=True)
    out = [{"unit_id": m.decode() if isinstance(m, bytes) else m, "lat": round(c[1], 7),
            "lon": round(c[0], 7), "distance_m": round(d, 1)} for m, d, c in found]
    return json_bytes(orjson.dumps(out))


@protected
async def incidents(request: Request):
    return json_bytes((await ctx(request).hub.incidents()).array())


@protected
async def stats(request: Request):
    c = ctx(request)
    await c.stats.refresh()
    return JSONResponse({"e2e": c.stats.summary(), "clients": len(c.hub.subs), "tz": c.settings.tz,
                         "last_update_id": c.hub.last_id, "zones": c.zone_count},
                        headers={"Cache-Control": "no-store"})
