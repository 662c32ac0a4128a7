"""`zonewatch gateway` — the HTTP / Server-Sent Events gateway and the wall page (CONTRACT §9).

    ZONEWATCH_GATEWAY_TOKENS=secret1,secret2 [ZONEWATCH_INGEST_TOKENS=secret3] zonewatch gateway --port 8080
    open http://127.0.0.1:8080/?token=secret1

Starlette on uvicorn, redis.asyncio for Redis. Endpoints (all but `/healthz`, `/metrics`, `/schemas/`
and the wall page with its `/static/` files need `Authorization: Bearer <token>`; `/stream` and `/ws`
also take `?token=`):

  GET /zones                 all zone states (JSON array of CONTRACT §3 documents)
  GET /zones?at=TS           every zone as it was at stream time TS (epoch ms or RFC 3339), from the
                             zones.state topic in Kafka (CONTRACT §11, gateway/rewind.py); 404 after
                             the stream clock or before the rewind retention, 400 for a bad TS
  GET /zones/{id}            one zone state, 404 if Redis has none for that id
  GET /zones.geojson         the zones file (ZONEWATCH_ZONES) with every feature's id at top level
  GET /units?near=LAT,LON&radius=M[&limit=N][&status=S,...]   units of zw:units within M metres,
                             nearest first, with eta_s, status, kind, ts; stale ones (fix > 120 s
                             older than the stream clock) left out
  GET /incidents             open incidents (zw:incidents), oldest call first
  GET /incidents/{call_id}   one incident's timeline (zw:incident:{call_id}), never a caller; 404 if none
  POST /ingest/{calls|gps|alerts|status}   with an ingest token (ZONEWATCH_INGEST_TOKENS; unset = 404):
                             a JSON object, array or NDJSON of at most 10,000 records and 10 MB, each
                             validated as the worker does; valid ones in Kafka (acks=all) before
                             200 {"accepted", "rejected": [{"index", "reason"}]}; 503 + Retry-After
                             when Kafka does not take them in --ingest-timeout (send the body again)
  GET /stream                Server-Sent Events: `snapshot`, then one `zone` event per zw:zone-updates
                             entry; resumable with Last-Event-ID (header or ?last_event_id=);
                             `resync` + a fresh `snapshot` when the id was trimmed or the client fell
                             too far behind. Besides: `incidents` (all open incidents) after every
                             snapshot or resume, then one `incident` event per zw:incident-updates
                             entry; these carry no `id:`, so Last-Event-ID stays a zone-updates id
  WS  /ws                    the same feed as JSON messages over a WebSocket
  GET /posts  /checkpoints   the duty plan's posts and checkpoints (CONTRACT §10; gateway/duty.py)
  GET|POST /plan/phase       the phase in force; an operator's phase command (ingest token)
  GET /stats                 the worker's e2e latency (p50/p99 over the last 30 s, scraped from its
                             /metrics), connected clients, the stream's time zone
  GET /schemas/{name}.json   the published JSON Schemas (contract/schemas.py), no token; /schemas/index.json
  GET /healthz  /metrics  /openapi.json
  GET /  /static/{wall.js,html.js,wall.css,rewind.js,duty.js}   the wall (rewind.js: its time slider;
                             duty.js: the duty plan's layer), with a strict Content-Security-Policy

Fan-out: ONE task per gateway process reads zw:zone-updates with XREAD BLOCK and puts each entry
(encoded once, shared by every client) into each client's bounded queue without awaiting anyone.
A client whose queue is full is marked "resync needed": its queue is emptied, further entries are
dropped for it, and its writer next sends `resync` and a fresh `snapshot`. A slow or stuck client
therefore costs one bounded queue and one socket buffer, never slows the reader, the pipeline or
the other clients: 200 clients cost 200 queues, one reading Redis connection and a small shared
pool (15) for snapshots, catch-ups and REST calls.

Limits (docs/SECURITY.md): a connection must send its complete request head within
--header-timeout (10 s) of connecting or of its last response, is closed after --keepalive (5 s)
idle, and is dropped when its client stops reading for --write-timeout (30 s); at most
--max-connections (1000) are open. Tokens need 16 characters or more and are masked in every log
line, under any spelling; a caller in a URL is refused. WebSocket client messages are limited to 4 KiB
(the gateway needs none), frames of any kind to 64 at once and 8 a second (a client over it is not
read until the budget has paid; 1008 after 10 s over it), and a client is not read while it does not
read. A request head is at most 16 KiB however it arrives;
Content-Length with Transfer-Encoding, or a body on a GET, is a 400. X-Forwarded-For counts only
from --forwarded-allow-ips. What Redis holds is checked against the contract's schemas before it
is served (a bad record is skipped). An /ingest body must arrive within --ingest-body-timeout (60 s);
at most --ingest-concurrency (4) bodies are handled at once. docs/SECURITY.md has the whole list.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from contract.errors import ConfigError, ZonewatchError
from contract.security import redacted_url
from contract.settings import Settings
from gateway.feed import DEFAULT_HEARTBEAT_S, DEFAULT_QUEUE, READ_BLOCK_MS, READER_TIMEOUT_MARGIN_S
from gateway.intake import DEFAULT_BODY_TIMEOUT_S, DEFAULT_CONCURRENCY, DEFAULT_PRODUCE_TIMEOUT_S
from gateway.stats import DEFAULT_WORKER_METRICS

log = logging.getLogger("zonewatch.gateway")

STATIC_DIR = Path(__file__).parent / "static"
REDIS_POOL = 16               # Redis connections per gateway process (one is the reader's)
#: the connection limits: flag, ZONEWATCH_GATEWAY_* variable, Limits field (defaults in gateway/server.py)
LIMIT_OPTIONS = (("--header-timeout", "ZONEWATCH_GATEWAY_HEADER_TIMEOUT_S", "header_timeout_s", float),
                 ("--keepalive", "ZONEWATCH_GATEWAY_KEEPALIVE_S", "keepalive_s", float),
                 ("--write-timeout", "ZONEWATCH_GATEWAY_WRITE_TIMEOUT_S", "write_timeout_s", float),
                 ("--max-connections", "ZONEWATCH_GATEWAY_MAX_CONNECTIONS", "max_connections", int))
#: intake (POST /ingest) options: flag, variable, Intake keyword, type, default, help
INTAKE_OPTIONS = (
    ("--ingest-timeout", "ZONEWATCH_INGEST_TIMEOUT_S", "produce_timeout_s", float, DEFAULT_PRODUCE_TIMEOUT_S,
     "seconds an /ingest request waits for Kafka to acknowledge its records, then 503"),
    ("--ingest-body-timeout", "ZONEWATCH_INGEST_BODY_TIMEOUT_S", "body_timeout_s", float, DEFAULT_BODY_TIMEOUT_S,
     "seconds an /ingest body may take to arrive, then 408"),
    ("--ingest-concurrency", "ZONEWATCH_INGEST_CONCURRENCY", "concurrency", int, DEFAULT_CONCURRENCY,
     "/ingest bodies read and produced at once; more wait up to --ingest-timeout, then 503"),
)


def quiet_kafka_client_logs() -> None:
    """aiokafka logs every record it sends (key and value) at debug level: the intake producer's
    records hold callers' numbers, which never reach a log (CONTRACT §6), whatever --log-level says."""
    for name in ("aiokafka", "kafka"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def create_app(settings: Settings, *, insecure: bool = False, cors_origins=(), worker_metrics=(),
               queue_size: int = DEFAULT_QUEUE, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
               intake_options: dict | None = None):
    """The Starlette app of one gateway; its context is `app.state.gw`."""
    import orjson
    from redis.exceptions import RedisError
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.routing import Route, WebSocketRoute

    from contract import redisurl
    from contract.plan import load_plan
    from contract.zones import load_zones, zones_geojson
    from gateway import duty, live, logs, openapi, rest, schemas
    from gateway.auth import NoCallerInURLs, Tokens
    from gateway.clock import StreamClock
    from gateway.context import Context
    from gateway.feed import Hub
    from gateway.intake import Intake
    from gateway.rewind import Rewind
    from gateway.stats import WorkerStats

    tokens = Tokens(settings.gateway_tokens, insecure, ingest=settings.ingest_tokens)
    logs.known_secrets((*settings.gateway_tokens, *settings.ingest_tokens))   # masked wherever they appear
    zones = load_zones(settings.zones, id_property=settings.zone_id_property)
    # A bounded pool: snapshots, catch-ups and REST calls share it, and a burst of connecting clients
    # waits for a free connection instead of opening one each; every call on it is bounded by
    # redis-py's socket timeout (5 s unless the URL says otherwise).
    redis = redisurl.async_client(settings.redis, pool_timeout=30, max_connections=REDIS_POOL - 1,
                                  health_check_interval=30)
    # The reader's own connection: XREAD BLOCK waits up to READ_BLOCK_MS for an answer, so its socket
    # timeout must be longer, or an idle feed would end every read in a timeout.
    reader = redisurl.async_client(settings.redis, pool_timeout=30, max_connections=1, health_check_interval=30)
    conn_kw = reader.connection_pool.connection_kwargs
    conn_kw["socket_timeout"] = max(conn_kw.get("socket_timeout") or 0, READ_BLOCK_MS / 1000 + READER_TIMEOUT_MARGIN_S)
    # with a duty plan the feed carries zw:post-updates too (gateway/feed.py)
    hub = Hub(redis, queue_size=queue_size, heartbeat_s=heartbeat_s, reader=reader, duty=settings.plan is not None)
    intake = Intake(settings, **(intake_options or {})) if tokens.intake else None
    context = Context(settings=settings, tokens=tokens, redis=redis, hub=hub,
                      stats=WorkerStats(list(worker_metrics) or [DEFAULT_WORKER_METRICS]),
                      geojson=orjson.dumps(zones_geojson(zones)), zone_count=len(zones),
                      wall_html=(STATIC_DIR / "index.html").read_bytes(), intake=intake,
                      static={name: (STATIC_DIR / name).read_bytes() for name in rest.STATIC_TYPES},
                      clock=StreamClock(redis, hub),
                      rewind=Rewind(settings, [z.zone_id for z in zones]))

    async def redis_down(request, exc):
        log.warning("redis error on %s: %s", request.url.path, exc)
        return rest.error(503, "redis unavailable")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        quiet_kafka_client_logs()
        await hub.start()
        await context.rewind.start()    # connects in the background
        if intake is not None:
            await intake.start()
        try:
            yield
        finally:
            if intake is not None:
                await intake.stop()
            await context.rewind.stop()
            await hub.stop()
            await redis.aclose()
            await reader.aclose()

    routes = [
        Route("/", rest.wall),                           # the wall: open, with its CSP (gateway/rest.py)
        Route("/static/{name}", rest.static),            # its script and style, open
        Route("/healthz", rest.healthz),
        Route("/metrics", rest.metrics),
        Route("/openapi.json", openapi.openapi),
        Route("/schemas/{name}.json", schemas.schema),   # open, like /healthz (gateway/schemas.py)
        Route("/zones", rest.zones),                     # ?at=TS: gateway/rewind.py
        Route("/zones.geojson", rest.zones_geojson),
        Route("/zones/{zone_id:path}", rest.zone_one),
        Route("/units", rest.units),
        Route("/incidents", rest.incidents),
        Route("/incidents/{call_id:path}", rest.incident_one),
        Route("/ingest/{source}", rest.ingest, methods=["POST"]),
        Route("/stats", rest.stats),
        # the duty plan (CONTRACT §10, gateway/duty.py)
        Route("/posts", duty.posts),
        Route("/checkpoints", duty.checkpoints),
        Route("/plan/phase", duty.phase, methods=["GET"]),
        Route("/plan/phase", duty.set_phase, methods=["POST"]),
        Route("/stream", live.stream),
        WebSocketRoute("/ws", live.ws),
    ]
    middleware = [Middleware(NoCallerInURLs)]
    if cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET"],
                                     allow_headers=["Authorization", "Last-Event-ID", "Cache-Control"],
                                     max_age=600))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={RedisError: redis_down})
    app.state.gw = context
    app.state.hub = hub
    # the duty plan, for POST /plan/phase (a bad plan is refused at start, as by the worker)
    app.state.plan = load_plan(settings.plan, settings.tz) if settings.plan else None
    return app


# ---------------------------------------------------------------------------------------------
# command line


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "gateway", help="HTTP/SSE gateway for wall displays, and the wall page",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    p.add_argument("--redis", metavar="URL", help="Redis URL (default ZONEWATCH_REDIS)")
    p.add_argument("--zones", type=Path, metavar="FILE", help="zones GeoJSON (default ZONEWATCH_ZONES)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow this browser origin (repeatable; default: no cross-origin access)")
    p.add_argument("--insecure", action="store_true",
                   help="serve without tokens when ZONEWATCH_GATEWAY_TOKENS is unset (local experiments only)")
    p.add_argument("--worker-metrics", action="append", metavar="URL",
                   help="a worker's /metrics for the wall's latency badge (repeatable; default "
                        f"ZONEWATCH_WORKER_METRICS, comma-separated, or {DEFAULT_WORKER_METRICS})")
    p.add_argument("--client-queue", type=int, default=DEFAULT_QUEUE, metavar="N",
                   help=f"updates a client may lag before it is told to resync (default {DEFAULT_QUEUE})")
    p.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT_S, metavar="S",
                   help=f"seconds between heartbeat comments (default {DEFAULT_HEARTBEAT_S:.0f})")
    from gateway.server import Limits

    helps = {"header_timeout_s": "seconds a connection may take to send a complete request head, from connect "
                                 "and after each response",
             "keepalive_s": "seconds an idle connection is kept between requests",
             "write_timeout_s": "seconds a client may stop reading before its connection is dropped",
             "max_connections": "open connections at most; more get 503 at once"}
    for flag, env, field, kind in LIMIT_OPTIONS:
        p.add_argument(flag, type=kind, default=None, metavar="N" if kind is int else "S",
                       help=f"{helps[field]} (default {env} or {getattr(Limits, field):g})")
    for flag, env, _field, kind, default, text in INTAKE_OPTIONS:
        p.add_argument(flag, type=kind, default=None, metavar="N" if kind is int else "S",
                       help=f"{text} (default {env} or {default:g})")
    p.add_argument("--forwarded-allow-ips", metavar="ADDRS", default=None,
                   help="comma-separated addresses or networks of the reverse proxies whose X-Forwarded-For and "
                        "X-Forwarded-Proto are believed (default ZONEWATCH_GATEWAY_FORWARDED_ALLOW_IPS, else none: "
                        "the headers are ignored and logs show the peer's address)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--access-log", action="store_true", help="log every request (tokens masked)")
    p.set_defaults(func=run)
    return p


def _flag_or_env(args: argparse.Namespace, flag: str, env: str, kind):
    """A numeric option: its flag, else its environment variable, else None."""
    value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
    if value is None and os.environ.get(env, "").strip():
        try:
            value = kind(os.environ[env])
        except ValueError:
            whole = "whole " if kind is int else ""
            raise ConfigError(f"{env}={os.environ[env]!r} is not a {whole}number") from None
    return value


def limits_from(args: argparse.Namespace):
    """The connection limits: each flag, else its ZONEWATCH_GATEWAY_* variable, else the default."""
    from gateway.server import Limits

    values = {}
    for flag, env, field, kind in LIMIT_OPTIONS:
        value = _flag_or_env(args, flag, env, kind)
        if value is not None:
            values[field] = value
    limits = Limits(**values)
    limits.check()
    return limits


def intake_from(args: argparse.Namespace) -> dict:
    """The intake options: each flag, else its ZONEWATCH_INGEST_* variable, else the default."""
    values = {}
    for flag, env, field, kind, default, _text in INTAKE_OPTIONS:
        value = _flag_or_env(args, flag, env, kind)
        value = default if value is None else value
        if not value > 0:
            raise ConfigError(f"{flag} ({env}) must be positive, not {value!r}")
        values[field] = value
    return values


def forwarded_allow_ips(args: argparse.Namespace) -> tuple[str, ...]:
    """The proxies whose X-Forwarded-* headers count: the flag, else its variable, else none. Each
    an address or a network; uvicorn's "*" (believe anyone) is refused."""
    import ipaddress

    raw = args.forwarded_allow_ips
    if raw is None:
        raw = os.environ.get("ZONEWATCH_GATEWAY_FORWARDED_ALLOW_IPS", "")
    out = []
    for item in (x.strip() for x in raw.split(",")):
        if not item:
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"--forwarded-allow-ips (ZONEWATCH_GATEWAY_FORWARDED_ALLOW_IPS): {item!r} is not an "
                              "address or a network") from None
        out.append(item)
    return tuple(out)


def run(args: argparse.Namespace) -> int:
    from gateway.server import check_fd_limit, server

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env().with_(redis=args.redis, zones=args.zones)
        settings.check()
        if args.client_queue < 1 or args.heartbeat <= 0:
            raise ConfigError("--client-queue must be >= 1 and --heartbeat > 0")
        limits = limits_from(args)
        proxies = forwarded_allow_ips(args)
        check_fd_limit(limits.max_connections)
        metrics_urls = args.worker_metrics or [
            u.strip() for u in os.environ.get("ZONEWATCH_WORKER_METRICS", DEFAULT_WORKER_METRICS).split(",")
            if u.strip()]
        app = create_app(settings, insecure=args.insecure, cors_origins=args.cors_origin,
                         worker_metrics=metrics_urls, queue_size=args.client_queue, heartbeat_s=args.heartbeat,
                         intake_options=intake_from(args))
    except ZonewatchError as exc:
        print(f"zonewatch gateway: {exc}", file=sys.stderr)
        return 2
    if args.insecure and settings.gateway_tokens:
        log.warning("--insecure ignored: ZONEWATCH_GATEWAY_TOKENS is set")
    elif args.insecure:
        log.warning("serving WITHOUT tokens (--insecure)")
    srv = server(app, host=args.host, port=args.port, limits=limits, log_level=args.log_level,
                 access_log=args.access_log, forwarded_allow_ips=proxies)
    log.info("gateway on http://%s:%d/ (Redis %s, zones %s); limits: request head within %gs, keep-alive %gs, "
             "write timeout %gs, %d connections", args.host, args.port, redacted_url(settings.redis), settings.zones,
             limits.header_timeout_s, limits.keepalive_s, limits.write_timeout_s, limits.max_connections)
    log.info("X-Forwarded-For believed from: %s", ", ".join(proxies) or "nobody (--forwarded-allow-ips)")
    intake = (f"on, {len(settings.ingest_tokens)} ingest token(s), Kafka {settings.kafka}, topic prefix "
              f"{settings.topic_prefix!r}" if settings.ingest_tokens else "off (ZONEWATCH_INGEST_TOKENS unset)")
    log.info("intake (POST /ingest): %s", intake)
    srv.run()
    return 0
