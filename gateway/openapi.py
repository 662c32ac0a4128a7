"""/openapi.json: the gateway's endpoints as OpenAPI 3.1, with the schemas of what they take and
return (CONTRACT §1, §3, §9; docs/GATEWAY.md "More endpoints"): the documents zonewatch writes and the
input records from contract/schemas.py, the gateway's own answers from here.
tests/unit/gateway/test_openapi.py and test_rest.py check real answers against them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from contract import schemas, topics
from contract.events import MAX_ID_LEN, UNIT_STATUSES
from contract.response import UNIT_STALE_MS
from gateway.duty import MAX_COMMAND_BYTES
from gateway.intake import MAX_BYTES, MAX_RECORDS, NDJSON_TYPES, RETRY_AFTER_S, SOURCES
from gateway.rest import MAX_RADIUS_M, MAX_UNITS, STATIC_TYPES, protected
from gateway.rewind import LOCK_WAIT_S, MAX_SCAN_BYTES, READ_DEADLINE_S
from gateway.rewind import RETRY_AFTER_S as REWIND_RETRY_S

_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN}


def _obj(props: dict, required=(), **extra) -> dict:
    out = {"type": "object", "properties": props, **extra}
    if required:
        out["required"] = list(required)
    return out


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERR = _json(_ref("Error"), "error")
UNAUTHORIZED = _json(_ref("Error"), "missing or unknown token")
FORBIDDEN = _json(_ref("Error"), "a token of the other kind (an ingest-only token on a read endpoint)")

def _input(topic: str) -> dict:
    """An input topic's record schema (contract/schemas.py: exactly what the validator accepts)."""
    out = schemas.schema(topic)
    out.pop("$schema", None)
    return out


# The documents zonewatch writes (zone state, wall incident, timeline) come from contract/schemas.py,
# the one description of them (also published as docs/schemas/*.json); the gateway's own answers
# are described here.
_CONTRACT = schemas.openapi_components()
SCHEMAS = {
    "ZoneState": _CONTRACT["ZoneState"],
    "Incident": _CONTRACT["Incident"],
    "IncidentTimeline": _CONTRACT["IncidentTimeline"],
    "Unit": _CONTRACT["Unit"],
    "Post": _CONTRACT["Post"],
    "Checkpoint": _CONTRACT["Checkpoint"],
    "Phase": _CONTRACT["Phase"],
    "PhaseCommand": _obj({
        "command_id": _ID, "type": {"const": "phase"},
        "name": {"type": ["string", "null"], "description": "the phase now in force; null: back to the schedule"},
        "by": {"type": "string", "description": "who gave the command"},
        "ts": {"type": "integer", "description": "epoch ms it takes effect (on the position feed's watermark)"}},
        ["command_id", "type", "name", "by", "ts"], additionalProperties=False),
    "Stats": _obj({
        "e2e": _obj({"metric": {"type": "string"}, "what": {"type": "string"},
                     "p50_ms": {"type": ["number", "null"]}, "p99_ms": {"type": ["number", "null"]},
                     "events": {"type": "integer"}, "window_s": {"type": ["number", "null"]},
                     "error": {"type": ["string", "null"]}}),
        "clients": {"type": "integer"}, "tz": {"type": "string"}, "last_update_id": {"type": ["string", "null"]},
        "zones": {"type": "integer"},
        "rewind_retention_ms": {"type": "integer", "description": "how far back GET /zones?at= reaches "
                                                                  "(ZONEWATCH_REWIND_RETENTION_MS)"}}),
    "Health": _obj({"status": {"type": "string"}, "redis": {"type": "boolean"}, "clients": {"type": "integer"},
                    "last_update_id": {"type": ["string", "null"]},
                    "intake": {"enum": ["off", "connecting", "connected"],
                               "description": "POST /ingest's Kafka producer"}},
                   ["status", "redis", "intake"]),
    "IngestResult": _obj({
        "accepted": {"type": "integer", "minimum": 0,
                     "description": "records in Kafka (acks=all) before this answer"},
        "rejected": {"type": "array", "items": _obj({
            "index": {"type": "integer", "minimum": 0,
                      "description": "the record's position: array index or NDJSON line, from 0"},
            "reason": {"type": "string", "description": "the validator's reason, as in the worker's dead letters"}},
            ["index", "reason"], additionalProperties=False)}},
        ["accepted", "rejected"], additionalProperties=False),
    "CallIn": _input(topics.CALLS),
    "FixIn": _input(topics.GPS),
    "AlertIn": _input(topics.ALERTS),
    "StatusIn": _input(topics.STATUS),
    "Error": _obj({"error": {"type": "string"}, "retry_after_s": {"type": "integer"}}, ["error"]),
}
INPUT_OF = {"calls": "CallIn", "gps": "FixIn", "alerts": "AlertIn", "status": "StatusIn"}
assert set(INPUT_OF) == set(SOURCES)

_INGEST = {"post": {
    "summary": "Events from sources that cannot speak Kafka (CONTRACT §9)",
    "description": (
        f"An ingest token (ZONEWATCH_INGEST_TOKENS) in `Authorization: Bearer`; a read token gets 403. "
        f"At most {MAX_RECORDS} records and {MAX_BYTES} bytes, counted while the body arrives. Body by "
        f"Content-Type: NDJSON ({', '.join(sorted(NDJSON_TYPES))}: every line is a record, index = line "
        "number); application/json (one JSON value: an array's elements are the records, anything else is one "
        "record — an unparseable or empty body is one rejected record); any other or no type: JSON when the "
        "whole body parses as one value, else NDJSON. Each record is validated exactly as the worker "
        "validates Kafka messages; valid ones are published normalised (CONTRACT §1 fields, ts as epoch ms), "
        "keyed by the topic's key field, and acknowledged by Kafka (acks=all) before the 200. On 503 nothing "
        "of the request counts as accepted: send the same body again (records of a 503'd body may have "
        "landed; the pipeline counts a repeat once — calls and alerts by id, fixes by (unit_id, ts), status "
        "reports by (camera_id, ts)). Content-Encoding other than identity: 415."),
    "security": [{"bearer": []}],
    "parameters": [{"name": "source", "in": "path", "required": True, "schema": {"enum": list(SOURCES)},
                    "description": "calls -> calls.110, gps -> patrol.gps, alerts -> camera.alerts, "
                                   "status -> camera.status"}],
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [
            {"oneOf": [_ref(n) for n in INPUT_OF.values()]},
            {"type": "array", "maxItems": MAX_RECORDS, "items": {"oneOf": [_ref(n) for n in INPUT_OF.values()]}}]},
            "description": "one record, or an array of records of the path's source"},
        "application/x-ndjson": {"schema": {"type": "string"},
                                 "description": "one JSON record per line (the schemas above)"}}},
    "responses": {
        "200": _json(_ref("IngestResult"), "every accepted record is in Kafka"),
        "401": UNAUTHORIZED,
        "403": _json(_ref("Error"), "a read token (not an ingest token)"),
        "404": _json(_ref("Error"), "intake is off (ZONEWATCH_INGEST_TOKENS unset) or an unknown source"),
        "405": {"description": "only POST"},
        "408": _json(_ref("Error"), "the body did not arrive within --ingest-body-timeout (60 s)"),
        "413": _json(_ref("Error"), f"over {MAX_BYTES} bytes or {MAX_RECORDS} records (refused while reading, "
                                    "the connection is closed)"),
        "415": _json(_ref("Error"), "a compressed body"),
        "503": {**_json(_ref("Error"), "Kafka did not take the records within --ingest-timeout (5 s), the "
                                       "producer is not connected, or too many intake requests at once; "
                                       "send the body again"),
                "headers": {"Retry-After": {"schema": {"type": "integer", "const": RETRY_AFTER_S}}}},
    }}}

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "zonewatch gateway", "version": "0.2.0",
             "description": "Zone states, incidents and intake for wall displays and tools (CONTRACT §3, §9)."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "a read token (ZONEWATCH_GATEWAY_TOKENS); /ingest takes an "
                                                      "ingest token (ZONEWATCH_INGEST_TOKENS) instead"},
                            "token": {"type": "apiKey", "in": "query", "name": "token"}},
        "schemas": SCHEMAS,
    },
    "security": [{"bearer": []}],
    "paths": {
        "/zones": {"get": {
            "summary": "All zone states; with `at`, every zone as it was at that moment of stream time",
            "description": (
                "Without `at`: the documents in Redis now. With `at` (CONTRACT §11): each zone's last zones.state "
                "record at or before `at` (greatest Kafka timestamp = the document's `clock`, the later record "
                "among equals), for the zones of the zones file, read from Kafka by timestamp "
                "(docs/ARCHITECTURE.md \"Rewind\"). 404 when `at` lies after the stream clock (the newest `clock` "
                "among the latest zone updates), more than the rewind retention "
                "(ZONEWATCH_REWIND_RETENTION_MS, 7 days) before it, or before the oldest zones.state record. "
                "A zone with no record between the retention's start and `at` is left out; headers say what "
                f"the answer holds. At most {MAX_SCAN_BYTES >> 20} MiB read and {READ_DEADLINE_S:g} s per "
                "answer: a search stopped by them answers what it found, `X-Rewind-Complete: false`."),
            "parameters": [{"name": "at", "in": "query", "schema": {"type": "string"},
                            "description": "epoch ms (digits) or an RFC 3339 date-time with Z or an offset "
                                           "(a `+` must be sent as %2B)", "examples": {
                                "ms": {"value": "1686447000000"}, "rfc3339": {"value": "2023-06-11T09:30:00+08:00"}}}],
            "responses": {
                "200": {**_json({"type": "array", "items": _ref("ZoneState")}, "zone states, by zone id"),
                        "headers": {
                            "X-Rewind-At": {"schema": {"type": "integer"}, "description": "with `at`: it, epoch ms"},
                            "X-Rewind-Missing": {"schema": {"type": "integer"},
                                                 "description": "with `at`: zones of the zones file left out"},
                            "X-Rewind-Complete": {"schema": {"enum": ["true", "false"]},
                                                  "description": "with `at`: false when a bound stopped the search"}}},
                "400": _json(_ref("Error"), "`at` is not epoch ms or RFC 3339, lies before 2000, or is given twice"),
                "404": _json(_ref("Error"), "`at` lies outside the rewind retention (after the stream clock, "
                                            "before the retention's start or the oldest zones.state record)"),
                "503": {**_json(_ref("Error"), "with `at`: Kafka not connected or not answering, or another "
                                               f"rewind read for over {LOCK_WAIT_S:g} s; try again"),
                        "headers": {"Retry-After": {"schema": {"type": "integer", "const": REWIND_RETRY_S}}}},
                "401": UNAUTHORIZED, "403": FORBIDDEN}}},
        "/zones/{zone_id}": {"get": {"summary": "One zone state", "parameters": [
            {"name": "zone_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json(_ref("ZoneState"), "zone state"),
                          "404": _json(_ref("Error"), "no state for this zone id"),
                          "401": UNAUTHORIZED, "403": FORBIDDEN}}},
        "/zones.geojson": {"get": {
            "summary": "The zones as the wall draws them: one feature per zone (route segments and point "
                       "circles generated), its id at top level; properties name, kind, ring, and for route "
                       "segments route_id, segment, start_m, end_m, line (centre line), for points center "
                       "([lat, lon]) and radius_m",
            "responses": {"200": {"description": "GeoJSON FeatureCollection",
                                  "content": {"application/geo+json": {"schema": {"type": "object"}}}},
                          "401": UNAUTHORIZED, "403": FORBIDDEN}}},
        "/units": {"get": {
            "summary": "Units near a point, nearest first, with their status, kind, latest fix and ETA",
            "description": f"Units of zw:units within `radius` of `near`, with zw:unit-info. Units whose latest "
                           f"fix is more than {UNIT_STALE_MS // 1000} s older than the stream clock (the newest "
                           "`clock` among the latest zone updates; wall time before there is any) are left out, "
                           "and so are units without zw:unit-info.",
            "parameters": [
                {"name": "near", "in": "query", "required": True, "schema": {"type": "string"},
                 "description": "LAT,LON (latitude within ±85.05112878, the range of Redis GEO)"},
                {"name": "radius", "in": "query", "schema": {"type": "number", "default": 1000,
                                                             "maximum": MAX_RADIUS_M}, "description": "metres"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 1000, "maximum": MAX_UNITS}},
                {"name": "status", "in": "query", "schema": {"type": "string"},
                 "description": f"only these statuses (comma-separated: {', '.join(sorted(UNIT_STATUSES))})"}],
            "responses": {"200": _json({"type": "array", "items": _ref("Unit")}, "units"),
                          "400": _json(_ref("Error"), "bad parameters"), "401": UNAUTHORIZED, "403": FORBIDDEN}}},
        "/incidents": {"get": {"summary": "Open incidents (not arrived, not expired), oldest call first",
                               "responses": {"200": _json({"type": "array", "items": _ref("Incident")}, "incidents"),
                                             "401": UNAUTHORIZED, "403": FORBIDDEN}}},
        "/incidents/{call_id}": {"get": {
            "summary": "One incident's timeline: the call (never its caller), zones, ring, nearest units at "
                       "call time, corroborating alerts, arrival or breach, events on the stream clock",
            "parameters": [{"name": "call_id", "in": "path", "required": True, "schema": _ID}],
            "responses": {"200": _json(_ref("IncidentTimeline"), "the timeline"),
                          "404": _json(_ref("Error"), "unknown call id (or older than 48 h)"),
                          "401": UNAUTHORIZED, "403": FORBIDDEN}}},
        "/ingest/{source}": _INGEST,
        # the duty plan (CONTRACT §10, gateway/duty.py): documents checked against their schemas first
        "/posts": {"get": {"summary": "Every post of the duty plan: required and present strength, status, by id",
                           "responses": {"200": _json({"type": "array", "items": _ref("Post")}, "posts (none "
                                                      "without a plan)"), "401": UNAUTHORIZED, "403": FORBIDDEN}}},
        "/checkpoints": {"get": {"summary": "Every checkpoint of the duty plan: last visit and overdue, by id",
                                 "responses": {"200": _json({"type": "array", "items": _ref("Checkpoint")},
                                                            "checkpoints (none without a plan)"),
                                               "401": UNAUTHORIZED, "403": FORBIDDEN}}},
        "/plan/phase": {
            "get": {"summary": "The phase in force as the worker decided it (zw:phase); null before any",
                    "responses": {"200": _json({"oneOf": [_ref("Phase"), {"type": "null"}]}, "the phase"),
                                  "502": _json(_ref("Error"), "the stored phase does not match its schema"),
                                  "401": UNAUTHORIZED, "403": FORBIDDEN}},
            "post": {
                "summary": "An operator's phase command (ingest token), in plan.commands before the answer",
                "description": f"Body {{\"name\": phase | null, \"by\": who, \"ts\"?: epoch ms or RFC 3339}}, at "
                               f"most {MAX_COMMAND_BYTES} bytes; null returns to the schedule. Audited in "
                               "plan.commands, the gateway's log and duty.events' `phase` record (docs/DUTY.md).",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _obj(
                    {"name": {"type": ["string", "null"]}, "by": {"type": "string"},
                     "ts": {"type": ["integer", "string"]}}, ["by"])}}},
                "responses": {
                    "200": _json(_ref("PhaseCommand"), "the command, in Kafka (acks=all)"),
                    "400": _json(_ref("Error"), "not a phase of the plan, no `by`, a bad ts or body"),
                    "401": UNAUTHORIZED,
                    "403": _json(_ref("Error"), "a read token (not an ingest token)"),
                    "404": _json(_ref("Error"), "intake is off (ZONEWATCH_INGEST_TOKENS unset)"),
                    "409": _json(_ref("Error"), "no duty plan is loaded (ZONEWATCH_PLAN)"),
                    "413": _json(_ref("Error"), f"over {MAX_COMMAND_BYTES} bytes"),
                    "503": {**_json(_ref("Error"), "Kafka did not take the command; the phase is unchanged"),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}}}}}},
        "/stream": {"get": {
            "summary": "Server-Sent Events: snapshot, then one `zone` event per update",
            "description": "Events: `snapshot` (data: array of ZoneState, id: the stream id it is "
                           "consistent with), `zone` (data: one ZoneState, id: its zw:zone-updates id), "
                           "`resync` (a fresh `snapshot` follows), `incidents` (data: array of Incident; "
                           "after every snapshot and on resume; no id), `incident` (data: one Incident after a "
                           "change; drop it from the list unless status is open or breached; no id). Resume "
                           "with the Last-Event-ID header or ?last_event_id=. Clients keep the highest "
                           "`version` per zone. Heartbeat comment every 15 s.",
            "security": [{"bearer": []}, {"token": []}],
            "parameters": [{"name": "last_event_id", "in": "query", "schema": {"type": "string"}},
                           {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}},
                          "400": _json(_ref("Error"), "malformed Last-Event-ID"),
                          "401": UNAUTHORIZED, "403": FORBIDDEN}}},
        "/ws": {"get": {"summary": "WebSocket: the /stream feed as JSON messages {type: snapshot|zone|"
                                   "incidents|incident|resync|ping, ...}", "security": [{"bearer": []}, {"token": []}],
                        "responses": {"101": {"description": "switching protocols"}}}},
        "/stats": {"get": {"summary": "Worker e2e latency (last 30 s), clients, time zone",
                           "responses": {"200": _json(_ref("Stats"), "stats"), "401": UNAUTHORIZED,
                                         "403": FORBIDDEN}}},
        "/schemas/{name}.json": {"get": {
            "summary": "A published JSON Schema (contract/schemas.py, as docs/schemas/): topic records and Redis "
                       "documents; `index` lists them (no token: public documentation)", "security": [],
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"enum": [*schemas.names(), "index"]}}],
            "responses": {"200": {"description": "a JSON Schema (draft 2020-12)",
                                  "content": {"application/schema+json": {"schema": {"type": "object"}}}},
                          "404": _json(_ref("Error"), "no such schema")}}},
        "/healthz": {"get": {"summary": "Liveness, Redis reachability and intake's state (no token)", "security": [],
                             "responses": {"200": _json(_ref("Health"), "ok"),
                                           "503": _json(_ref("Health"), "Redis down")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (no token)", "security": [],
                             "responses": {"200": {"description": "text format"}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/static/{name}": {"get": {
            "summary": "The wall's script and style (no token)", "security": [],
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"enum": sorted(STATIC_TYPES)}}],
            "responses": {"200": {"description": "JavaScript or CSS"}, "404": _json(_ref("Error"), "no such file")}}},
        "/": {"get": {"summary": "The wall page (static; reads ?token=, and ?at= to open at a past moment)",
                      "security": [], "responses": {"200": {"description": "HTML"}}}},
    },
}


@protected
async def openapi(request: Request):
    return JSONResponse(SPEC)
