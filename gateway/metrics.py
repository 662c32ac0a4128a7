"""The gateway's own metrics, served at its /metrics (docs/GATEWAY.md "Metrics")."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from contract.metrics import SOURCES

disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)

CLIENTS = Gauge("zonewatch_gateway_clients", "Connected live-feed clients", ["transport"], registry=REGISTRY)
RESYNCS = Counter("zonewatch_gateway_resyncs_total",
                  "Resyncs sent to clients: slow = its queue overflowed, trimmed = its Last-Event-ID "
                  "is no longer in zw:zone-updates, reset = the stream was recreated", ["reason"],
                  registry=REGISTRY)
UPDATES = Counter("zonewatch_gateway_updates_total", "Entries read from zw:zone-updates", registry=REGISTRY)
INCIDENT_UPDATES = Counter("zonewatch_gateway_incident_updates_total", "Entries read from zw:incident-updates",
                           registry=REGISTRY)
WRITERS = Gauge("zonewatch_gateway_writers", "Writer tasks of live-feed clients (one per client, ends with it)",
                ["transport"], registry=REGISTRY)
CONNECTIONS = Gauge("zonewatch_gateway_connections", "Open client connections (HTTP, SSE and WebSocket)",
                    registry=REGISTRY)
CONNECTIONS_REFUSED = Counter("zonewatch_gateway_connections_refused_total",
                              "Connections closed at once because --max-connections were open", registry=REGISTRY)
CONNECTIONS_CLOSED = Counter("zonewatch_gateway_connections_closed_total",
                             "Connections the gateway closed: header_timeout = no complete request head in "
                             "time, write_timeout = the client stopped reading", ["reason"], registry=REGISTRY)
REDIS_ERRORS = Counter("zonewatch_gateway_redis_errors_total", "Failed reads of zw:zone-updates (retried)",
                       registry=REGISTRY)
INGEST_REQUESTS = Counter("zonewatch_gateway_ingest_requests_total",
                          "POST /ingest requests by source and HTTP status", ["source", "status"], registry=REGISTRY)
INGEST_RECORDS = Counter("zonewatch_gateway_ingest_records_total",
                         "Records of POST /ingest bodies: accepted = in Kafka (acknowledged) and answered, "
                         "rejected = refused by the contract's validator", ["source", "outcome"], registry=REGISTRY)

TRANSPORTS = ("sse", "ws")
for _t in TRANSPORTS:
    CLIENTS.labels(_t)
    WRITERS.labels(_t)
for _r in ("header_timeout", "write_timeout"):
    CONNECTIONS_CLOSED.labels(_r)
for _r in ("slow", "trimmed", "reset"):
    RESYNCS.labels(_r)
for _s in SOURCES:
    for _o in ("accepted", "rejected"):
        INGEST_RECORDS.labels(_s, _o)
