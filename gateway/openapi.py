"""/openapi.json: the gateway's endpoints as OpenAPI 3.1."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.rest import MAX_RADIUS_M, MAX_UNITS, protected

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "zonewatch gateway", "version": "0.1.0",
             "description": "Zone states for wall displays and tools (CONTRACT §3, §9)."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                            "token": {"type": "apiKey", "in": "query", "name": "token"}},
        "schemas": {
            "ZoneState": {"type": "object", "description": "CONTRACT §3 zone state document",
                          "required": ["zone_id", "version", "clock", "level"],
                          "properties": {
                              "zone_id": {"type": "string"}, "name": {"type": "string"},
                              "kind": {"type": "string"}, "ring": {"type": ["string", "null"]},
                              "version": {"type": "integer"}, "clock": {"type": "integer"},
                              "level": {"enum": ["green", "yellow", "orange", "red"]},
                              "today": {"type": "object"}, "windows": {"type": "object"},
                              "units": {"type": "object"}, "response": {"type": "object"},
                              "open_incidents": {"type": "integer"}}},
            "Unit": {"type": "object", "properties": {
                "unit_id": {"type": "string"}, "lat": {"type": "number"}, "lon": {"type": "number"},
                "distance_m": {"type": "number"}}},
            "Incident": {"type": "object", "description": "An incident on the wall (README: Open incidents "
                         "on the wall); in zw:incidents while status is open or breached",
                         "properties": {
                             "call_id": {"type": "string"},
                             "status": {"enum": ["open", "breached", "arrived", "expired", "closed"]},
                             "ts": {"type": "integer", "description": "call time, epoch ms"},
                             "lat": {"type": "number"}, "lon": {"type": "number"},
                             "category": {"type": "string"}, "priority": {"type": "integer"},
                             "zones": {"type": "array", "items": {"type": "string"}},
                             "ring": {"type": ["string", "null"]},
                             "breach_at": {"type": "integer", "description": "ts + 300 s"},
                             "arrived_ts": {"type": ["integer", "null"]}, "unit_id": {"type": ["string", "null"]},
                             "response_s": {"type": ["number", "null"]},
                             "nearest_units": {"type": "array", "items": {"type": "object"}},
                             "clock": {"type": "integer", "description": "stream clock when written"},
                             "partition": {"type": "integer"}}},
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/zones": {"get": {"summary": "All zone states", "responses": {
            "200": {"description": "zone states", "content": {"application/json": {"schema": {
                "type": "array", "items": {"$ref": "#/components/schemas/ZoneState"}}}}},
            "401": {"description": "missing or invalid token"}}}},
        "/zones/{zone_id}": {"get": {"summary": "One zone state", "parameters": [
            {"name": "zone_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "zone state", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ZoneState"}}}},
                "404": {"description": "no state for this zone id"},
                "401": {"description": "missing or invalid token"}}}},
        "/zones.geojson": {"get": {"summary": "The zones file (every feature's id at top level)",
                                   "responses": {"200": {"description": "GeoJSON FeatureCollection"}}}},
        "/units": {"get": {"summary": "Units near a point, nearest first (zw:units)", "parameters": [
            {"name": "near", "in": "query", "required": True, "schema": {"type": "string"},
             "description": "LAT,LON"},
            {"name": "radius", "in": "query", "schema": {"type": "number", "default": 1000,
                                                         "maximum": MAX_RADIUS_M}, "description": "metres"},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 1000, "maximum": MAX_UNITS}}],
            "responses": {"200": {"description": "units", "content": {"application/json": {"schema": {
                "type": "array", "items": {"$ref": "#/components/schemas/Unit"}}}}},
                "400": {"description": "bad parameters"}}}},
        "/incidents": {"get": {"summary": "Open incidents (not arrived, not expired), oldest call first",
                               "responses": {"200": {"description": "incidents", "content": {"application/json": {
                                   "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Incident"}}}}},
                                   "401": {"description": "missing or invalid token"}}}},
        "/stream": {"get": {
            "summary": "Server-Sent Events: snapshot, then one `zone` event per update",
            "description": "Events: `snapshot` (data: array of zone states, id: the stream id it is "
                           "consistent with), `zone` (data: one zone state, id: its zw:zone-updates id), "
                           "`resync` (a fresh `snapshot` follows), `incidents` (data: array of open "
                           "incidents; after every snapshot and on resume; no id), `incident` (data: one "
                           "incident after a change; drop it from the list unless status is open or "
                           "breached; no id). Resume with the Last-Event-ID header "
                           "or ?last_event_id=. Clients keep the highest `version` per zone. "
                           "Heartbeat comment every 15 s.",
            "security": [{"bearer": []}, {"token": []}],
            "parameters": [{"name": "last_event_id", "in": "query", "schema": {"type": "string"}},
                           {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}},
                          "400": {"description": "malformed Last-Event-ID"}}}},
        "/ws": {"get": {"summary": "WebSocket: the /stream feed as JSON messages {type: snapshot|zone|"
                                   "incidents|incident|resync|ping, ...}", "security": [{"bearer": []}, {"token": []}],
                        "responses": {"101": {"description": "switching protocols"}}}},
        "/stats": {"get": {"summary": "Worker e2e latency (last 30 s), clients, time zone",
                           "responses": {"200": {"description": "stats"}}}},
        "/healthz": {"get": {"summary": "Liveness and Redis reachability (no token)", "security": [],
                             "responses": {"200": {"description": "ok"}, "503": {"description": "Redis down"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (no token)", "security": [],
                             "responses": {"200": {"description": "text format"}}}},
        "/": {"get": {"summary": "The wall page (static; reads ?token=)", "security": [],
                      "responses": {"200": {"description": "HTML"}}}},
    },
}


@protected
async def openapi(request: Request):
    return JSONResponse(SPEC)
