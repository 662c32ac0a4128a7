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
                             "time, write_timeout = the client stopped reading, ws_flood = a WebSocket client "
                             "sent frames faster than its budget (close 1008), bad_head = a request head over "
                             "the size limit or with both Content-Length and Transfer-Encoding (400)",
                             ["reason"], registry=REGISTRY)
REDIS_ERRORS = Counter("zonewatch_gateway_redis_errors_total", "Failed reads of zw:zone-updates (retried)",
                       registry=REGISTRY)
INGEST_REQUESTS = Counter("zonewatch_gateway_ingest_requests_total",
                          "POST /ingest requests by source and HTTP status", ["source", "status"], registry=REGISTRY)
INGEST_RECORDS = Counter("zonewatch_gateway_ingest_records_total",
                         "Records of POST /ingest bodies: accepted = in Kafka (acknowledged) and answered, "
                         "rejected = refused by the contract's validator", ["source", "outcome"], registry=REGISTRY)
BAD_RECORDS = Counter("zonewatch_gateway_bad_records_total",
                      "Records read from Redis that did not match their schema and were skipped, by kind (zone, "
                      "incident, incident-timeline, unit, and a duty plan's post, checkpoint, phase); "
                      "counted each time one is skipped (a bad zone document "
                      "once per snapshot that leaves it out)", ["kind"], registry=REGISTRY)
LOG_LINES_SUPPRESSED = Counter("zonewatch_gateway_log_lines_suppressed_total",
                               "Warnings and errors not written because the same line came too often (a client "
                               "can trigger them; gateway/logs.py)", registry=REGISTRY)

TRANSPORTS = ("sse", "ws")
for _t in TRANSPORTS:
    CLIENTS.labels(_t)
    WRITERS.labels(_t)
for _r in ("header_timeout", "write_timeout", "ws_flood", "bad_head"):
    CONNECTIONS_CLOSED.labels(_r)
for _r in ("slow", "trimmed", "reset"):
    RESYNCS.labels(_r)
for _k in ("zone", "incident", "incident-timeline", "unit", "post", "checkpoint", "phase"):
    BAD_RECORDS.labels(_k)
for _s in SOURCES:
    for _o in ("accepted", "rejected"):
        INGEST_RECORDS.labels(_s, _o)
