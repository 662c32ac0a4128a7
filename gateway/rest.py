"""The request/response endpoints. Each is a plain async function of the request; what they share
comes from `gateway.context.ctx(request)`. All but /, /static/*, /healthz and /metrics need a bearer
token: a read token, or for POST /ingest an ingest token."""

from __future__ import annotations

import asyncio
import functools
import math
import time

import orjson
from prometheus_client import generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from contract import keys
from contract.errors import RewindRefused
from contract.events import MAX_ID_LEN, UNIT_KINDS, UNIT_STATUSES
from contract.response import UNIT_STALE_MS, eta_s
from gateway import untrusted
from gateway.auth import OK, refusal
from gateway.context import ctx
from gateway.intake import (
    RETRY_AFTER_S,
    SOURCES,
    Intake,
    TooLarge,
    Unavailable,
    body_format,
    parse,
    read_body,
)
from gateway.metrics import INGEST_RECORDS, INGEST_REQUESTS, REGISTRY

MAX_RADIUS_M = 100_000.0
MAX_UNITS = 10_000
#: never in a timeline answer, at any depth, whatever the worker wrote (CONTRACT §6)
PERSONAL = frozenset(("caller", "caller_ref"))


def protected(handler):
    """The handler, answered with 401 unless the request carries a read token (403 for an
    ingest-only token)."""

    @functools.wraps(handler)
    async def wrapped(request: Request):
        status = ctx(request).tokens.read(request)
        if status != OK:
            return refusal(status, "read")
        return await handler(request)

    return wrapped


def json_bytes(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def error(status: int, msg: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": msg}, status_code=status, headers=headers)


#: the wall runs no script but its own files (no inline script, no handler attributes, no eval),
#: sets innerHTML only through html.js's Trusted Types policy, loads nothing from elsewhere and is
#: framed by no one; its first URL carries ?token=, so no Referer either
WALL_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
            "require-trusted-types-for 'script'; trusted-types zw-html")
WALL_HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": WALL_CSP, "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
#: the wall's files under /static/ and their types; nothing else is served from there
STATIC_TYPES = {"wall.js": "text/javascript; charset=utf-8", "html.js": "text/javascript; charset=utf-8",
                "wall.css": "text/css; charset=utf-8", "rewind.js": "text/javascript; charset=utf-8",
                "duty.js": "text/javascript; charset=utf-8"}   # the duty plan's layer (gateway/duty.py)


async def wall(request: Request):
    return Response(ctx(request).wall_html, media_type="text/html; charset=utf-8", headers=WALL_HEADERS)


async def static(request: Request):
    """/static/{name}: the wall's script and style (open, like the page)."""
    name = request.path_params["name"]
    body = ctx(request).static.get(name)
    if body is None:
        return error(404, f"no static file {name!r}")
    return Response(body, media_type=STATIC_TYPES[name],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


async def healthz(request: Request):
    c = ctx(request)
    try:
        await asyncio.wait_for(c.redis.ping(), 2.0)
        ok = True
    except Exception:
        ok = False
    body = {"status": "ok" if ok else "redis unreachable", "redis": ok,
            "clients": len(c.hub.subs), "last_update_id": c.hub.last_id,
            # intake's Kafka producer: "off" (no ingest tokens), "connecting" (POST /ingest answers
            # 503 meanwhile) or "connected"; it does not make /healthz fail: the walls are served
            "intake": c.intake.state if c.intake is not None else "off"}
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request):
    return Response(generate_latest(REGISTRY), media_type="text/plain; version=0.0.4; charset=utf-8")


@protected
async def zones(request: Request):
    c = ctx(request)
    if "at" in request.query_params:   # every zone as it was at that moment (gateway/rewind.py)
        clock, _source = await c.clock.now()
        try:
            return await c.rewind.zones_at(request, clock)
        except RewindRefused as refused:
            return error(refused.status, str(refused), refused.headers)
    docs = await c.hub.zone_documents()
    return json_bytes(b"[" + b",".join(docs) + b"]")


@protected
async def zone_one(request: Request):
    zid = request.path_params["zone_id"]
    doc = await ctx(request).redis.get(keys.zone(zid))
    if doc is None:
        return error(404, f"no zone {zid!r}")
    checked = untrusted.ZONE.read(doc, keys.zone(zid))
    if checked is None:
        return error(502, f"the stored document of zone {zid!r} does not match the zone schema")
    return json_bytes(checked.json)


@protected
async def zones_geojson(request: Request):
    return Response(ctx(request).geojson, media_type="application/geo+json", headers={"Cache-Control": "no-cache"})


def _str(v) -> str:
    return v.decode() if isinstance(v, bytes) else v


@protected
async def units(request: Request):
    """Units of zw:units within `radius` of `near`, nearest first, with their latest fix's status,
    kind and ts (zw:unit-info) and an ETA to `near` by kind; units whose fix is older than
    UNIT_STALE_MS on the stream clock, and units without zw:unit-info, are left out."""
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
    # no unit can be stored beyond Redis GEO's latitudes, and GEOSEARCH refuses a centre there, so
    # such a `near` is the client's error (400), not Redis' (503)
    if abs(lat) > keys.GEO_LAT_LIMIT:
        return error(400, f"near: lat must be within ±{keys.GEO_LAT_LIMIT} (the range of Redis GEO; no unit can be "
                          "stored beyond it)")
    if not (0 < radius <= MAX_RADIUS_M) or not 1 <= limit <= MAX_UNITS:
        return error(400, f"radius must be in (0, {MAX_RADIUS_M:.0f}] metres and limit 1..{MAX_UNITS}")
    statuses = None
    if q.get("status"):
        statuses = {s.strip() for s in q["status"].split(",") if s.strip()}
        if not statuses or not statuses <= UNIT_STATUSES:
            return error(400, f"status must be a comma-separated list of {', '.join(sorted(UNIT_STATUSES))}")
    c = ctx(request)
    # every unit in the circle (up to MAX_UNITS): stale ones are dropped below, and must not take
    # the places of fresh ones further out
    found = await c.redis.geosearch(keys.UNITS, longitude=lon, latitude=lat, radius=radius, unit="m",
                                    sort="ASC", count=MAX_UNITS, withdist=True, withcoord=True)
    if not found:
        return json_bytes(b"[]")
    clock, _source = await c.clock.now()
    ids = [_str(m) for m, _d, _c in found]
    infos = await c.redis.hmget(keys.UNIT_INFO, ids)
    out = []
    for (_m, d, coord), uid, raw in zip(found, ids, infos, strict=True):
        if raw is None:
            continue   # no zw:unit-info (written with every position): the fix's age is unknown
        try:
            info = orjson.loads(raw)
            ts, status, kind = info["ts"], info["status"], info["kind"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            untrusted.UNIT.reject(raw, f"{keys.UNIT_INFO} {uid!r}", "not an object with ts, status and kind")
            continue
        if type(kind) is not str or kind not in UNIT_KINDS:
            untrusted.UNIT.reject(raw, f"{keys.UNIT_INFO} {uid!r}", f"kind {str(kind)[:20]!r}")
            continue
        dist = round(d, 1)
        item = {"unit_id": uid, "lat": round(coord[1], 7), "lon": round(coord[0], 7),
                "distance_m": dist, "eta_s": eta_s(dist, kind), "status": status, "kind": kind, "ts": ts}
        if not untrusted.UNIT.conforms(item, f"{keys.UNIT_INFO} {uid!r}"):
            continue
        if clock - ts > UNIT_STALE_MS or (statuses is not None and status not in statuses):
            continue
        out.append(item)
        if len(out) >= limit:
            break
    return json_bytes(orjson.dumps(out))


@protected
async def incidents(request: Request):
    return json_bytes((await ctx(request).hub.incidents()).array())


def without_personal(value):
    """`value` with every `caller` / `caller_ref` key removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_personal(v) for k, v in value.items() if k not in PERSONAL}
    if isinstance(value, list):
        return [without_personal(v) for v in value]
    return value


@protected
async def incident_one(request: Request):
    """GET /incidents/{call_id}: the incident's timeline (zw:incident:{call_id}), 404 if none."""
    call_id = request.path_params["call_id"]
    if not 0 < len(call_id) <= MAX_ID_LEN:
        return error(404, "no incident with that call_id (call ids are 1..64 characters)")
    raw = await ctx(request).redis.get(keys.incident(call_id))
    if raw is None:
        return error(404, f"no incident {call_id!r} (unknown, or older than {keys.INCIDENT_TTL_S // 3600} h)")
    doc = untrusted.TIMELINE.parse(raw, keys.incident(call_id), prepare=without_personal)
    if doc is None:
        return error(502, f"the stored timeline of {call_id!r} does not match the incident-timeline schema")
    return json_bytes(orjson.dumps(doc))


@protected
async def stats(request: Request):
    c = ctx(request)
    await c.stats.refresh()
    return JSONResponse({"e2e": c.stats.summary(), "clients": len(c.hub.subs), "tz": c.settings.tz,
                         "last_update_id": c.hub.last_id, "zones": c.zone_count,
                         "rewind_retention_ms": c.settings.rewind_retention_ms},
                        headers={"Cache-Control": "no-store"})


def _answer(source: str, status: int, body: dict, headers: dict | None = None) -> Response:
    """An /ingest answer, counted by source and status."""
    INGEST_REQUESTS.labels(source, str(status)).inc()
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store", **(headers or {})})


async def ingest(request: Request) -> Response:
    """POST /ingest/{source} (gateway/intake.py): with an ingest token, the body's valid records in
    Kafka before the answer. Never logs the body or anything from it."""
    c = ctx(request)
    source = request.path_params["source"]
    label = source if source in SOURCES else "unknown"
    intake: Intake | None = c.intake
    if intake is None or not c.tokens.intake:
        return _answer(label, 404, {"error": "intake is off (set ZONEWATCH_INGEST_TOKENS to turn it on)"})
    status = c.tokens.ingest(request)
    if status != OK:
        INGEST_REQUESTS.labels(label, str(status)).inc()
        return refusal(status, "ingest (it is not an ingest token)")
    topic = SOURCES.get(source)
    if topic is None:
        return _answer(label, 404, {"error": f"unknown source {source[:40]!r}: one of {', '.join(SOURCES)}"})
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return _answer(source, 415, {"error": f"Content-Encoding {encoding[:40]!r} is not accepted; send the body "
                                              "uncompressed"})
    fmt = body_format(request.headers.get("content-type"))
    busy = {"Retry-After": str(RETRY_AFTER_S)}
    try:
        await asyncio.wait_for(intake.slots.acquire(), intake.produce_timeout_s)
    except TimeoutError:
        return _answer(source, 503, {"error": "too many intake requests at once", "retry_after_s": RETRY_AFTER_S},
                       busy)
    try:
        try:
            body = await read_body(request, fmt, intake.body_timeout_s)
        except TooLarge as exc:
            return _answer(source, 413, {"error": str(exc)}, {"Connection": "close"})
        except TimeoutError:
            return _answer(source, 408, {"error": f"the body did not arrive within {intake.body_timeout_s:g} s"},
                           {"Connection": "close"})
        except ClientDisconnect:   # the client went away mid-body: nothing was accepted, nobody reads this
            return _answer(source, 400, {"error": "the client disconnected before the body was complete"})
        max_ts = int(time.time() * 1000) + c.settings.future_tolerance_ms
        try:
            parsed = await asyncio.to_thread(parse, topic, body, fmt, max_ts)
        except TooLarge as exc:
            return _answer(source, 413, {"error": str(exc)})
        del body
        try:
            await intake.produce(topic, parsed.accepted)
        except Unavailable as exc:
            return _answer(source, 503, {"error": f"{exc}; nothing of this request is accepted: send it again "
                                                  "(repeats are counted once)", "retry_after_s": RETRY_AFTER_S},
                           busy)
    finally:
        intake.slots.release()
    INGEST_RECORDS.labels(source, "accepted").inc(len(parsed.accepted))
    INGEST_RECORDS.labels(source, "rejected").inc(len(parsed.rejected))
    return _answer(source, 200, {"accepted": len(parsed.accepted), "rejected": parsed.rejected})
