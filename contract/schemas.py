"""JSON Schemas (draft 2020-12) of every topic's records and of the Redis documents, and the
AsyncAPI 3.0 document of the topics: built here from the contract's own constants, so a changed
enum, range or field list changes the published schemas (docs/OPERATIONS.md "Schemas").

    schema(name)            one schema, e.g. schema("calls.110"), schema("zone")
    example(name, **kw)     a copy of its first example with the members in kw
    published()             every public schema by name (what the gateway serves)
    openapi_components()    ZoneState, Incident, IncidentTimeline, Unit for gateway/openapi.py
    record_key(topic, rec)  the Kafka key an output record carries (AsyncAPI's key bindings)
    documents(zone_events)  {relative path: text} of docs/schemas/*.json and docs/asyncapi.yaml
    write(docs_dir, ...)    writes them (`make schemas`)

Input schemas say exactly what contract/events.py accepts, as far as JSON Schema can say it; the
few rules it cannot express are in each schema's `$comment` (the upper bound of `ts`, impossible
calendar dates, unassigned code points in ids). Unknown enum values of `category` and `type` are
accepted (they count as `other`): the schema documents the known values in an `anyOf` and admits
any other string. Optional fields may be null, as the validator treats null as absent.
Output and Redis schemas are strict (`additionalProperties: false`): zonewatch writes exactly these
fields, and a new field comes with its schema in the same commit. Every schema is self-contained
(no `$ref`), so it can be embedded in OpenAPI as it is. The internal zone-events schema is made
from the msgspec structs of streams/records.py, passed in by the caller (the contract imports
nothing of the project).
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import events, keys, plan, response, topics, zones
from .response import MAX_CORROBORATING, MAX_RECOMMENDED

Schema = dict[str, Any]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: zone levels, mildest first (CONTRACT §3 "Level"; streams/rules.py LEVELS; tests/unit/contract/test_schemas.py checks)
LEVELS = ("green", "yellow", "orange", "red")
#: the sliding windows of a zone document (CONTRACT §3; streams/zone_state.py WINDOWS)
WINDOWS = ("5m", "15m", "60m")
#: the wall's incident statuses: OPEN_STATUSES stay in zw:incidents; `closed` is what a takeover
#: writes for an entry whose end it no longer knows (streams/recovery.py)
WALL_STATUSES = (*keys.OPEN_STATUSES, "arrived", "expired", "closed")
TIMELINE_STATUSES = (*keys.OPEN_STATUSES, "arrived", "expired")
TIMELINE_EVENTS = ("call", "recommended", "alert", "breach", "arrived", "expired")
DECISION_TYPES = ("arrived", "breach")     # an incident's decision (its timeline)
SLA_TYPES = (*DECISION_TYPES, "tiers")
RAW_ENCODINGS = ("utf-8", "base64")
CALLER_REF_LEN = 16
#: caller, lang and text limits of contract/events.py validate_call
CALLER_MAX, LANG_MAX = 64, 35
#: base64 text of DEADLETTER_RAW_LIMIT bytes
_B64_MAX = 4 * -(-events.DEADLETTER_RAW_LIMIT // 3)
#: sources of `health.last_event_ts` (CONTRACT §3)
LAST_EVENT_SOURCES = ("calls", "gps", "alerts")
#: coverage windows of a zone document (CONTRACT §3 v3; contract/response.py COVERAGE_WINDOWS_MS)
COVERAGE_WINDOWS = tuple(name for name, _ms in response.COVERAGE_WINDOWS_MS)
#: a zones.daily key: "{local date}|{zone_id}"
DAILY_KEY_SEP = "|"


# ----------------------------------------------------------------------------------- pieces


@lru_cache(maxsize=1)
def nonprintable_class() -> str:
    """A regex character class of every code point str.isprintable() refuses (contract/events.py
    ids): the categories Cc, Cf, Co, Cn (unassigned), Zs but the space, Zl, Zp, as literal ranges, per
    the Unicode version of the Python that generates it (3.11: Unicode 14.0). Surrogates (Cs) are left
    out: they cannot occur in JSON text."""
    ranges: list[list[int]] = []
    for c in range(0x110000):
        ch = chr(c)
        if ch.isprintable() or unicodedata.category(ch) == "Cs":
            continue
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "[" + "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges) + "]"


def _ident(description: str, exact: bool = False) -> Schema:
    """An id: 1..64 characters, printable. Input schemas check "printable" exactly (a long class of
    code points); output ids were checked on input, so their schemas only say so."""
    out: Schema = {"type": "string", "minLength": 1, "maxLength": events.MAX_ID_LEN, "description": description}
    if exact:
        out["not"] = {"pattern": nonprintable_class(), "description": "no character str.isprintable() refuses"}
        out["$comment"] = (f"printable per Unicode {unicodedata.unidata_version} (Python str.isprintable): the "
                           "class lists code points beyond the BMP, so match it with a Unicode-aware regex "
                           "(ECMA-262 `u` flag)")
    else:
        out["$comment"] = "printable (checked on input)"
    return out


def _rx(body: str) -> str:
    """`body` matching the whole string: `^...$`, and no newline anywhere (Python's `$`, which
    jsonschema uses, also matches before a final newline; ECMA-262's does not)."""
    return f"^(?!.*\\n){body}$"


def _ts_pattern() -> str:
    """RFC 3339 date-time with an offset, on a date that exists, years 2000..9999, no leap second
    (Python refuses 60), nothing after it (`$` alone would let a final newline through in Python)."""
    year = r"(2\d{3}|[3-9]\d{3})"
    leap = r"([2-9]\d(0[48]|[2468][048]|[13579][26])|(2[048]|[3579][26]|[468][048])00)"
    date = (rf"({year}-((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)"
            rf"|02-(0[1-9]|1\d|2[0-8]))|{leap}-02-29)")
    time = r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?"
    return _rx(rf"{date}[Tt ]{time}(Z|[+-]([01]\d|2[0-3]):[0-5]\d)")


def _ts_input(what: str) -> Schema:
    return {
        "description": f"{what}: epoch milliseconds (integer) or an RFC 3339 date-time with an offset "
                       "(e.g. 2023-06-11T07:30:00+08:00); between 2000-01-01T00:00:00Z and the processing "
                       "host's clock plus ZONEWATCH_FUTURE_TOLERANCE_MS (5 min by default)",
        "oneOf": [
            {"type": "integer", "minimum": events.MIN_TS_MS},
            {"type": "string", "maxLength": events.MAX_TS_STR_LEN, "pattern": _ts_pattern()},
        ],
        "$comment": "Not expressible here: the upper bound (host clock + tolerance), and the 2000-01-01T00:00:00Z "
                    "bound for strings within a day of it (the pattern checks the local year). The worker also "
                    "accepts other ISO 8601 forms with an offset (Python datetime.fromisoformat); producers "
                    "should send RFC 3339 as this schema says.",
    }


def _ms(description: str, minimum: int = events.MIN_TS_MS) -> Schema:
    return {"type": "integer", "minimum": minimum, "description": description}


def _coord(limit: float, what: str) -> Schema:
    return {"type": "number", "minimum": -limit, "maximum": limit, "description": what}


def _count(description: str = "") -> Schema:
    out: Schema = {"type": "integer", "minimum": 0}
    if description:
        out["description"] = description
    return out


def _counts_by(names: Schema, description: str) -> Schema:
    return {"type": "object", "propertyNames": names, "additionalProperties": _count(), "description": description}


def _open_enum(known: frozenset[str] | tuple[str, ...], what: str) -> Schema:
    """A string that is one of `known` or, accepted all the same, anything else (counted as other)."""
    return {"type": "string",
            "anyOf": [{"enum": sorted(known)},
                      {"type": "string", "description": "any other value: accepted, counted as `other`"}],
            "description": f"{what}: one of the listed values; an unknown value is accepted as `other`"}


def _nullable(s: Schema) -> Schema:
    out = dict(s)
    t = out.get("type")
    if isinstance(t, str):
        out["type"] = [t, "null"]
    elif "enum" in out:
        out["enum"] = [*out["enum"], None]
    else:
        out = {"anyOf": [s, {"type": "null"}]}
    return out


def _obj(props: dict[str, Schema], required: tuple[str, ...] | list[str] | None = None, *,
         strict: bool = True, description: str = "", comment: str = "") -> Schema:
    out: Schema = {"type": "object", "required": list(props if required is None else required),
                   "properties": props}
    if strict:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    if comment:
        out["$comment"] = comment
    return out


def _top(title: str, description: str, body: Schema, examples: list[Any]) -> Schema:
    return {"$schema": DIALECT, "title": title, "description": description, **body, "examples": examples}


_CATEGORY = {"enum": sorted(events.CATEGORIES), "description": "call category (unknown values arrive as `other`)"}
_ALERT_TYPE = {"enum": sorted(events.ALERT_TYPES), "description": "alert type (unknown values arrive as `other`)"}
_RING = {"enum": [*zones.RINGS, None], "description": "the zone's ring, or null"}
_PRIORITY = {"type": "integer", "minimum": 1, "maximum": 4, "description": "1 = most urgent"}
_CAT_COUNTS = _counts_by({"enum": sorted(events.CATEGORIES)}, "accepted calls by category")
_PRIO_COUNTS = _counts_by({"enum": ["1", "2", "3", "4"]}, "accepted calls by priority")
_LANG_COUNTS = _counts_by({"pattern": _rx("[a-z]{1,8}")},
                          "accepted calls by the BCP 47 primary language subtag of `lang`, lower case; `und` "
                          "when a call has none")
_TYPE_COUNTS = _counts_by({"enum": sorted(events.ALERT_TYPES)}, "accepted alerts by type")


def _unit_recommendation() -> Schema:
    return _obj({"unit_id": _ident("the unit"), "kind": {"enum": sorted(events.UNIT_KINDS)},
                 "distance_m": {"type": "number", "minimum": 0, "description": "straight-line distance"},
                 "eta_s": {"type": "integer", "minimum": 0,
                           "description": "distance x 1.3 / the kind's nominal speed (contract/response.py)"}})


def _nearest_units(positions: bool = False) -> Schema:
    """`positions`: the timeline's entries also carry where the unit was at the call's ts (optional:
    units added from processing-time positions beyond the exact part have none)."""
    item = _unit_recommendation()
    if positions:
        item["properties"] |= {"lat": _coord(90.0, "the unit's fix at or before the call's ts"),
                               "lon": _coord(180.0, "the unit's fix at or before the call's ts"),
                               "ts": _ms("that fix's ts")}
    return {"type": "array", "maxItems": MAX_RECOMMENDED, "items": item,
            "description": f"up to {MAX_RECOMMENDED} available units at call time, nearest first"}


def _corroborating(positions: bool = False) -> Schema:
    """`positions`: the timeline's entries also carry the alert's camera position."""
    props: dict[str, Schema] = {"alert_id": _ident("the alert"), "type": _ALERT_TYPE,
                                "distance_m": {"type": "number", "minimum": 0, "maximum": 300},
                                "dt_s": {"type": "number", "minimum": -600, "maximum": 600,
                                         "description": "alert ts - call ts, seconds"}}
    required = list(props)
    if positions:
        props |= {"lat": _coord(90.0, "the camera's position (the alert's)"),
                  "lon": _coord(180.0, "the camera's position (the alert's)")}
    return {"type": "array", "maxItems": MAX_CORROBORATING,
            "description": "camera alerts within 300 m and ±10 min of the call, closest in time first",
            "items": _obj(props, required)}


def _response(what: str, tiers_required: bool = True) -> Schema:
    props = {
        "arrived": _count("arrivals decided"),
        "within_1m": _count("arrivals with response <= 60 s"),
        "within_3m": _count("arrivals with response <= 180 s"),
        "within_5m": _count("arrivals with response <= 300 s"),
        "breaches": _count("breaches decided"),
        "p50_s": {"type": ["integer", "null"], "minimum": 0, "description": "median response (nearest rank), s"},
        "p90_s": {"type": ["integer", "null"], "minimum": 0, "description": "90th percentile (nearest rank), s"},
        "tiers_met": _count("calls whose on-scene tiers (decided at call ts + 300 s) met this zone's requirement "
                            "(CONTRACT §3 v3, §10)"),
        "tiers_decided": _count("calls whose on-scene tiers were decided (call ts + 300 s)"),
    }
    required = list(props) if tiers_required else [k for k in props if not k.startswith("tiers_")]
    return _obj(props, required, description=what)


def _on_scene() -> Schema:
    return _obj({name: _count(f"distinct units with a fix within {response.ARRIVAL_RADIUS_M:g} m of the call at "
                              f"a ts in [call ts, call ts + {limit} s]")
                 for name, limit in zip(response.TIER_NAMES, response.TIERS_S, strict=True)},
                description="units on scene by 1, 3 and 5 minutes")


def _normalised_call(extra: dict[str, Schema] | None = None) -> dict[str, Schema]:
    props: dict[str, Schema] = {
        "call_id": _ident("unique per call"),
        "ts": _ms("when the call was received, epoch ms (normalised from any input form)"),
        "lat": _coord(90.0, "WGS84 latitude"), "lon": _coord(180.0, "WGS84 longitude"),
        "category": _CATEGORY, "priority": _PRIORITY,
    }
    props.update(extra or {})
    props["lang"] = {"type": "string", "maxLength": LANG_MAX, "description": "BCP 47 tag as the call gave it"}
    props["text"] = {"type": "string", "maxLength": events.MAX_TEXT_LEN}
    return props


# ------------------------------------------------------------------------------- inputs (§1)


def _call() -> Schema:
    props = {
        "call_id": _ident("unique per call; a repeat is a duplicate, counted once", exact=True),
        "ts": _ts_input("when the call was received"),
        "lat": _coord(90.0, "WGS84 latitude"), "lon": _coord(180.0, "WGS84 longitude"),
        "category": _open_enum(events.CATEGORIES, "call category"),
        "priority": {**_PRIORITY, "description": "1..4, 1 = most urgent (an integral number such as 2.0 counts)"},
        "caller": {"type": ["string", "null"], "maxLength": CALLER_MAX,
                   "description": "caller phone number: personal data, replaced by caller_ref after ingestion "
                                  "(CONTRACT §6)"},
        "lang": {"type": ["string", "null"], "maxLength": LANG_MAX, "description": "BCP 47 language tag"},
        "text": {"type": ["string", "null"], "maxLength": events.MAX_TEXT_LEN},
    }
    return _obj(props, ("call_id", "ts", "lat", "lon", "category", "priority"), strict=False,
                comment="unknown extra fields are ignored; null optional fields count as absent")


def _gps() -> Schema:
    props = {
        "unit_id": _ident("the patrol unit", exact=True),
        "ts": _ts_input("fix time"),
        "lat": _coord(90.0, "WGS84 latitude"), "lon": _coord(180.0, "WGS84 longitude"),
        "status": {"enum": [*sorted(events.UNIT_STATUSES), None], "default": "available"},
        "kind": {"enum": [*sorted(events.UNIT_KINDS), None], "default": "car"},
        "force": {"anyOf": [{"enum": [*events.FORCES, None]},
                            {"type": "string", "description": "any other value: accepted as police"}],
                  "default": events.DEFAULT_FORCE,
                  "description": "police, auxiliary (辅警), volunteer (群防群治, 义警) or security (guards); an "
                                 "unknown value is accepted as police (CONTRACT §1 v3)"},
        "speed": {"type": ["number", "null"], "minimum": 0, "maximum": events.MAX_FLOAT, "description": "m/s"},
        "heading": {"type": ["number", "null"], "minimum": 0, "maximum": 360, "description": "degrees"},
    }
    return _obj(props, ("unit_id", "ts", "lat", "lon"), strict=False,
                comment="a ping is identified by (unit_id, ts); unknown extra fields are ignored")


def _alert() -> Schema:
    props = {
        "alert_id": _ident("unique; a repeat is a duplicate", exact=True),
        "camera_id": _ident("the camera", exact=True),
        "ts": _ts_input("when the alert fired"),
        "lat": _coord(90.0, "camera latitude"), "lon": _coord(180.0, "camera longitude"),
        "type": _open_enum(events.ALERT_TYPES, "alert type"),
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "severity": {"type": ["integer", "null"], "minimum": 1, "maximum": 4, "default": 3,
                     "description": "1 = most severe"},
    }
    return _obj(props, ("alert_id", "camera_id", "ts", "lat", "lon", "type", "confidence"), strict=False,
                comment="unknown extra fields are ignored")


def _status() -> Schema:
    props = {
        "camera_id": _ident("the camera", exact=True),
        "ts": _ts_input("when the camera (or its platform) reported"),
        "lat": _coord(90.0, "camera latitude"), "lon": _coord(180.0, "camera longitude"),
        "online": {"type": ["boolean", "null"], "default": True,
                   "description": "false = the platform reports the camera down"},
    }
    return _obj(props, ("camera_id", "ts", "lat", "lon"), strict=False,
                comment="a report is identified by (camera_id, ts); unknown extra fields are ignored")


# ------------------------------------------------------------------------------ outputs (§4)


def _enriched() -> Schema:
    props = _normalised_call({
        "caller_ref": {"type": "string", "pattern": _rx(f"[0-9a-f]{{{CALLER_REF_LEN}}}"),
                       "description": "HMAC-SHA256 of the caller's number under ZONEWATCH_CALLER_SECRET, 16 hex "
                                      "chars; absent when the call had no caller or no secret is set"},
    })
    props.update({
        "zones": {"type": "array", "items": {"type": "string"}, "uniqueItems": True,
                  "description": "ids of every zone containing the call (empty: in no zone)"},
        "ring": {**_RING, "description": "innermost ring of those zones, or null"},
        "nearest_units": _nearest_units(),
        "corroborating_alerts": _corroborating(),
        "processed_at": _ms("wall clock when the worker sent the record, epoch ms", 0),
    })
    req = ("call_id", "ts", "lat", "lon", "category", "priority", "zones", "ring", "nearest_units",
           "corroborating_alerts", "processed_at")
    return _obj(props, req, comment="never a `caller` field (CONTRACT §6); a record can be sent again with more "
                                    "corroborating alerts or recommendations: the latest wins")


_ABSENT: Schema = {"not": {}, "description": "absent in this type of record"}


def _sla() -> Schema:
    arrived = _obj({"type": {"const": "arrived"}, "unit_id": _ident("the arriving unit"),
                    "response_s": {"type": "number", "minimum": 0}, "on_scene": _ABSENT, "met": _ABSENT},
                   ("type", "unit_id", "response_s"), strict=False)
    breach = _obj({"type": {"const": "breach"}, "unit_id": {"type": "null"}, "response_s": {"type": "null"},
                   "on_scene": _ABSENT, "met": _ABSENT}, ("type", "unit_id", "response_s"), strict=False)
    tiers = _obj({"type": {"const": "tiers"}, "on_scene": _on_scene(), "met": {"type": "boolean"},
                  "unit_id": _ABSENT, "response_s": _ABSENT}, ("type", "on_scene", "met"), strict=False)
    body = _obj({
        "type": {"enum": list(SLA_TYPES)},
        "call_id": _ident("the call"),
        "zone_ids": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "unit_id": {"type": ["string", "null"], "description": "arrived and breach records only"},
        "response_s": {"type": ["number", "null"], "minimum": 0,
                       "description": "arrival fix ts - call ts, seconds (3 decimals); arrived and breach only"},
        "on_scene": _on_scene(),
        "met": {"type": "boolean",
                "description": "tiers only: the counts reach the requirement of every zone of the call (per tier "
                               "the largest; 1/2/3 without a plan, CONTRACT §10)"},
        "ts": _ms("arrived: the arrival fix's ts; breach and tiers: call ts + 300 s"),
    }, ("type", "call_id", "zone_ids", "ts"))
    body["oneOf"] = [arrived, breach, tiers]
    return body


def _zone_doc() -> Schema:
    window = _obj({"calls": _count(), "calls_p1": _count("priority-1 calls"), "alerts": _count(),
                   "alerts_by_type": _TYPE_COUNTS})
    props: dict[str, Schema] = {
        "zone_id": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        "kind": {"enum": list(zones.KINDS)},
        "ring": _RING,
        "version": {"type": "integer", "minimum": 1, "description": "strictly increasing per zone"},
        "clock": _ms("stream clock (largest accepted input ts) when computed, epoch ms"),
        "level": {"enum": list(LEVELS)},
        "today": _obj({
            "date": {"type": "string", "format": "date", "pattern": _rx(r"\d{4}-\d{2}-\d{2}"),
                     "description": "local date of the stream clock (ZONEWATCH_TZ)"},
            "calls": _count(), "calls_by_category": _CAT_COUNTS, "calls_by_priority": _PRIO_COUNTS,
            "calls_by_lang": _LANG_COUNTS, "alerts": _count(), "alerts_by_type": _TYPE_COUNTS,
        }),
        "windows": _obj({w: window for w in WINDOWS}, description="events of the last N minute buckets"),
        "units": _obj({"present": _count("units whose latest fix is inside and <= 120 s old"),
                       "available": _count("present units whose status is available"),
                       "by_force": _obj({f: _count() for f in events.FORCES},
                                        description="present units by the force of their latest fix")}),
        "response": _response("decisions of the last 60 min of stream clock"),
        "open_incidents": _count("incidents neither arrived nor expired"),
        "health": _obj({
            "cameras_known": _count("cameras whose last report (<= 24 h) lies in the zone"),
            "cameras_silent": _count("known cameras silent > ZONEWATCH_CAMERA_SILENT_S or reported offline"),
            "units_quiet": _count("units whose latest fix lies in the zone, 120 s..30 min old"),
            "last_event_ts": _obj({s: _nullable(_ms("epoch ms")) for s in LAST_EVENT_SOURCES},
                                  description="per source, the largest ts accepted inside the zone; null when "
                                              "none in 24 h of stream clock (v3; the age is clock or now - ts)"),
        }),
        "reach": _obj({"within_1m": {"type": "number", "minimum": 0, "maximum": 1},
                       "within_3m": {"type": "number", "minimum": 0, "maximum": 1},
                       "within_5m": {"type": "number", "minimum": 0, "maximum": 1}},
                      description="share of the zone's area the nearest available unit reaches within "
                                  "60 s / 180 s / 300 s (CONTRACT §3; within_1m v3)"),
        "coverage": _obj({w: {"type": "number", "minimum": 0, "maximum": 1} for w in COVERAGE_WINDOWS},
                         description="share of the zone's H3 resolution-9 cells (centre in the zone; the cell of a "
                                     "point in it when none) in which a fix of any unit fell in the last 60 min / "
                                     "8 h of stream clock, 2 decimals (CONTRACT §3 v3)"),
    }
    # CONTRACT §10: the posts lying in the zone by status, with a duty plan (absent without one)
    props["posts"] = _obj({"required": _count("posts whose phase requires units now (not off)"),
                           "manned": _count(), "understaffed": _count(), "empty": _count()},
                          description="posts lying in the zone by status (CONTRACT §10; absent without a plan)")
    req = [k for k in props if k not in ("reach", "posts")]
    return _obj(props, req)


def _daily() -> Schema:
    hourly = {"type": "array", "items": _count(), "minItems": 24, "maxItems": 24,
              "description": "counts by local hour 0..23"}
    props: dict[str, Schema] = {
        "date": {"type": "string", "format": "date", "pattern": _rx(r"\d{4}-\d{2}-\d{2}"), "description": "local date"},
        "zone_id": {"type": "string", "minLength": 1}, "name": {"type": "string"},
        "kind": {"enum": list(zones.KINDS)}, "ring": _RING,
        "tz": {"type": "string", "minLength": 1, "description": "IANA time zone of the date (ZONEWATCH_TZ)"},
        "final": {"type": "boolean",
                  "description": "true once the stream clock passed the next local midnight plus the grace"},
        "clock": _ms("stream clock when written"),
        "version": {"type": "integer", "minimum": 1, "description": "increasing per key"},
        "calls": _count(), "calls_by_category": _CAT_COUNTS, "calls_by_priority": _PRIO_COUNTS,
        "calls_by_lang": _LANG_COUNTS, "alerts": _count(), "alerts_by_type": _TYPE_COUNTS,
        "hourly": _obj({"calls": hourly, "alerts": hourly}),
        "response": _response("the day's decisions: arrivals whose fix ts and breaches and on-scene tiers whose "
                              "deadline (call ts + 300 s) fall on the date; p50/p90 nearest-rank over the day's "
                              "response times (tiers_met/tiers_decided since v3: absent in older records)",
                              tiers_required=False),
    }
    once_response = _response("the decisions of the calls whose first zone this is (no on-scene tiers)",
                              tiers_required=False)
    once_response["properties"]["times"] = {
        "type": "object", "propertyNames": {"pattern": _rx(r"[0-9]+")}, "additionalProperties": _count(),
        "description": "response time in whole seconds -> decisions: merged over zones, the overall percentiles"}
    once_response["required"].append("times")
    props["once"] = _obj({k: props[k] for k in ("calls", "calls_by_category", "calls_by_priority", "calls_by_lang",
                                                "alerts", "alerts_by_type", "hourly")} | {"response": once_response},
                         description="the same figures for the calls and alerts whose first zone (the ingest's "
                                     "order) is this one: each event has one, so summed over every zone they count "
                                     "each event once however many nested zones hold it")
    if set(props) != set(topics.DAILY_FIELDS):  # contract/topics.py changed: say which field to describe
        raise AssertionError(f"contract/schemas.py describes {sorted(props)}, topics.DAILY_FIELDS is "
                             f"{sorted(topics.DAILY_FIELDS)}: update _daily()")
    minutes = {"type": "number", "minimum": 0}
    props["post_minutes_understaffed"] = {**minutes, "description": "minutes the zone's posts spent understaffed "
                                          "that day (CONTRACT §10; with a duty plan)"}
    props["post_minutes_empty"] = {**minutes, "description": "minutes the zone's posts spent empty that day"}
    props["checkpoint_misses"] = _count("times a checkpoint in the zone became overdue that day")
    return _obj({f: props[f] for f in (*topics.DAILY_FIELDS, *topics.DAILY_DUTY_FIELDS)}, topics.DAILY_FIELDS)


POST_STATUSES = ("off", "manned", "understaffed", "empty")
_POINT_ID = {"type": "string", "minLength": 1, "maxLength": plan.MAX_ID_LEN}
_PHASE_NAME = {"type": ["string", "null"], "description": "a phase of the plan, or null (none in force)"}


def _duty_event() -> Schema:
    """duty.events (CONTRACT §10): one of three records."""
    post = _obj({"type": {"const": "post_status"}, "post_id": _POINT_ID, "status": {"enum": list(POST_STATUSES)},
                 "previous": {"enum": list(POST_STATUSES)}, "required": _count("units the phase requires"),
                 "present": _count("units counted at the post"), "ts": _ms("when the status began")})
    cp = _obj({"type": {"enum": ["checkpoint_overdue", "checkpoint_visited"]}, "checkpoint_id": _POINT_ID,
               "unit_id": {"type": ["string", "null"], "description": "the visiting unit; null for an overdue"},
               "ts": _ms("the visit's fix ts, or the instant it became overdue")})
    phase = _obj({"type": {"const": "phase"}, "name": _PHASE_NAME, "previous": _PHASE_NAME,
                  "source": {"enum": ["schedule", "operator"]},
                  "by": {"type": ["string", "null"], "description": "the operator whose command it was; null for a "
                                                                    "schedule boundary"},
                  "ts": _ms("when the phase came into force")})
    return {"oneOf": [post, cp, phase]}


def _post_doc() -> Schema:
    return _obj({"post_id": _POINT_ID, "name": {"type": "string"}, "lat": _coord(90.0, "latitude"),
                 "lon": _coord(180.0, "longitude"), "radius_m": {"type": "number", "exclusiveMinimum": 0},
                 "phase": _PHASE_NAME, "required": _count("units the phase in force requires"),
                 "present": _count("units counted: latest fix within 120 s, inside, not off duty, of a counted force"),
                 "unit_ids": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                 "status": {"enum": list(POST_STATUSES)},
                 "since": {"type": ["integer", "null"], "description": "stream ts the status began (null: never "
                                                                       "changed from off)"},
                 "version": {"type": "integer", "minimum": 1, "description": "strictly increasing per post"}})


def _checkpoint_doc() -> Schema:
    return _obj({"checkpoint_id": _POINT_ID, "name": {"type": "string"}, "lat": _coord(90.0, "latitude"),
                 "lon": _coord(180.0, "longitude"), "radius_m": {"type": "number", "exclusiveMinimum": 0},
                 "last_visit": {"type": ["integer", "null"], "description": "largest ts of a fix within radius_m"},
                 "last_unit": {"type": ["string", "null"]},
                 "every_s": {"type": ["integer", "null"], "description": "the phase in force's maximum interval"},
                 "overdue": {"type": "boolean"},
                 "overdue_since": {"type": ["integer", "null"], "description": "when it became overdue"},
                 "version": {"type": "integer", "minimum": 1}})


def _phase_doc() -> Schema:
    return _obj({"name": _PHASE_NAME, "source": {"enum": ["schedule", "operator"]},
                 "by": {"type": ["string", "null"]}, "since": {"type": ["integer", "null"]},
                 "previous": _PHASE_NAME, "version": {"type": "integer", "minimum": 1}})


def _deadletter() -> Schema:
    names = "|".join(re.escape(t) for t in topics.INPUT_TOPICS)
    body = _obj({
        "topic": {"type": "string", "pattern": _rx(f".*({names})"),
                  "description": "the input topic's full name (with ZONEWATCH_TOPIC_PREFIX)"},
        "partition": _count(), "offset": _count(),
        "reason": {"type": "string", "minLength": 1, "description": "why the record was rejected"},
        "raw": {"type": "string", "description": "the original value, cut to 64 KiB; caller numbers replaced "
                                                 "by caller_ref (CONTRACT §6)"},
        "raw_encoding": {"enum": list(RAW_ENCODINGS)},
    })
    body["oneOf"] = [
        _obj({"raw_encoding": {"const": "utf-8"}, "raw": {"maxLength": events.DEADLETTER_RAW_LIMIT}}, strict=False),
        _obj({"raw_encoding": {"const": "base64"},
              "raw": {"maxLength": _B64_MAX, "pattern": _rx("[A-Za-z0-9+/]*={0,2}")}}, strict=False),
    ]
    return body


# ----------------------------------------------------------------------------- Redis (§3)


def _wall_incident() -> Schema:
    return _obj({
        "call_id": _ident("the call"),
        "status": {"enum": list(WALL_STATUSES),
                   "description": "open and breached stay in zw:incidents; the others remove the entry"},
        "ts": _ms("call time"),
        "lat": _coord(90.0, "call latitude"), "lon": _coord(180.0, "call longitude"),
        "category": _CATEGORY, "priority": _PRIORITY,
        "zones": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "ring": _RING,
        "breach_at": _ms("call ts + 300 s"),
        "arrived_ts": _nullable(_ms("the arrival fix's ts")),
        "unit_id": {"type": ["string", "null"], "description": "the arriving unit"},
        "response_s": {"type": ["number", "null"], "minimum": 0},
        "nearest_units": _nearest_units(),
        "clock": _ms("stream clock when written"),
        "partition": _count("zone-events partition that owns the incident"),
    })


def _timeline() -> Schema:
    call = _obj(_normalised_call(), ("call_id", "ts", "lat", "lon", "category", "priority"),
                description="the call without caller or caller_ref")
    decision = _obj({"type": {"enum": list(DECISION_TYPES)}, "unit_id": {"type": ["string", "null"]},
                     "response_s": {"type": ["number", "null"], "minimum": 0}, "ts": _ms("when decided (event time)")})
    props: dict[str, Schema] = {
        "call_id": _ident("the call"),
        "call": call,
        "zones": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "ring": _RING,
        "nearest_units": _nearest_units(positions=True),
        "corroborating_alerts": _corroborating(positions=True),
        "decision": _nullable(decision),
        "arrival": _nullable(_obj({"unit_id": _ident("the arriving unit"),
                                   "response_s": {"type": "number", "minimum": 0}, "ts": _ms("the fix's ts")})),
        "breach": _nullable(_obj({"ts": _ms("call ts + 300 s")})),
        "status": {"enum": list(TIMELINE_STATUSES)},
        "events": {"type": "array", "items": _obj({"ts": _ms("event time"), "what": {"enum": list(TIMELINE_EVENTS)}},
                                                  strict=False),
                   "description": "what happened, in order; each entry carries the fields of its kind"},
        "clock": _ms("stream clock when written"),
        "partition": _count("zone-events partition that owns the incident"),
    }
    return _obj(props)


def _unit() -> Schema:
    return _obj({"unit_id": _ident("the unit"),
                 "lat": _coord(85.05112878, "latest fix (Redis GEO keeps latitudes within ±85.05112878)"),
                 "lon": _coord(180.0, "latest fix"),
                 "distance_m": {"type": "number", "minimum": 0, "description": "from the requested point"},
                 "eta_s": {"type": "integer", "minimum": 0,
                           "description": "distance_m x 1.3 / the kind's speed (contract/response.py)"},
                 "status": {"enum": sorted(events.UNIT_STATUSES), "description": "the latest fix's status"},
                 "kind": {"enum": sorted(events.UNIT_KINDS), "description": "the latest fix's kind"},
                 "ts": {"type": "integer", "minimum": 0,
                        "description": "the latest fix's ts, epoch ms (at most "
                                       f"{response.UNIT_STALE_MS // 1000} s older than the stream clock)"}})


# --------------------------------------------------------------------------------- examples

_T = 1686440000000  # 2023-06-11T07:33:20+08:00
_EX_CALL = {"call_id": "110-20230611-0001", "ts": "2023-06-11T07:30:00+08:00", "lat": 34.7466, "lon": 113.6253,
            "category": "theft", "priority": 2, "caller": "13800000000", "lang": "zh", "text": "电动车被盗"}
_EX_ENRICHED = {"call_id": "110-20230611-0001", "ts": 1686439800000, "lat": 34.7466, "lon": 113.6253,
                "category": "theft", "priority": 2, "lang": "zh", "text": "电动车被盗",
                "caller_ref": "5f1c0a9e2b7d4c11", "zones": ["erqi-03", "venue-outer"], "ring": "outer",
                "nearest_units": [{"unit_id": "P-117", "kind": "car", "distance_m": 412.5, "eta_s": 65}],
                "corroborating_alerts": [{"alert_id": "cam-88-20230611-17", "type": "crowd_density",
                                          "distance_m": 120.4, "dt_s": -95.0}],
                "processed_at": 1686439800120}
_EX_ZONE = {
    "zone_id": "venue-core", "name": "Stadium core", "kind": "venue", "ring": "core", "version": 17, "clock": _T,
    "level": "orange",
    "today": {"date": "2023-06-11", "calls": 12, "calls_by_category": {"theft": 5, "medical": 7},
              "calls_by_priority": {"1": 2, "2": 10}, "calls_by_lang": {"zh": 11, "und": 1},
              "alerts": 40, "alerts_by_type": {"crowd_density": 30, "face_watchlist": 10}},
    "windows": {w: {"calls": 1, "calls_p1": 0, "alerts": 3, "alerts_by_type": {"crowd_density": 3}} for w in WINDOWS},
    "units": {"present": 14, "available": 9,
              "by_force": {"police": 10, "auxiliary": 3, "volunteer": 1, "security": 0}},
    "response": {"arrived": 5, "within_1m": 1, "within_3m": 3, "within_5m": 5, "breaches": 1, "p50_s": 140,
                 "p90_s": 280, "tiers_met": 4, "tiers_decided": 6},
    "open_incidents": 2,
    "health": {"cameras_known": 40, "cameras_silent": 3, "units_quiet": 1,
               "last_event_ts": {"calls": _T - 420_000, "gps": _T - 3_000, "alerts": None}},
    "reach": {"within_1m": 0.31, "within_3m": 0.82, "within_5m": 0.97},
    "coverage": {"60m": 0.42, "8h": 0.88},
}
_EX_DAILY = {
    "date": "2023-06-11", "zone_id": "venue-core", "name": "Stadium core", "kind": "venue", "ring": "core",
    "tz": "Asia/Shanghai", "final": False, "clock": _T, "version": 42, "calls": 12,
    "calls_by_category": {"theft": 5, "medical": 7}, "calls_by_priority": {"1": 2, "2": 10},
    "calls_by_lang": {"zh": 11, "und": 1}, "alerts": 40, "alerts_by_type": {"crowd_density": 40},
    "hourly": {"calls": [0] * 7 + [12] + [0] * 16, "alerts": [0] * 7 + [40] + [0] * 16},
    "response": {"arrived": 5, "within_1m": 1, "within_3m": 3, "within_5m": 5, "breaches": 1, "p50_s": 140,
                 "p90_s": 280, "tiers_met": 4, "tiers_decided": 6},
    "once": {"calls": 9, "calls_by_category": {"theft": 4, "medical": 5}, "calls_by_priority": {"1": 2, "2": 7},
             "calls_by_lang": {"zh": 9}, "alerts": 31, "alerts_by_type": {"crowd_density": 31},
             "hourly": {"calls": [0] * 7 + [9] + [0] * 16, "alerts": [0] * 7 + [31] + [0] * 16},
             "response": {"arrived": 4, "within_1m": 1, "within_3m": 3, "within_5m": 4, "breaches": 1, "p50_s": 140,
                          "p90_s": 280, "times": {"50": 1, "140": 1, "170": 1, "280": 1}}},
}
_EX_WALL = {"call_id": "110-20230611-0001", "status": "breached", "ts": 1686439800000, "lat": 34.7466,
            "lon": 113.6253, "category": "theft", "priority": 2, "zones": ["erqi-03"], "ring": None,
            "breach_at": 1686440100000, "arrived_ts": None, "unit_id": None, "response_s": None,
            "nearest_units": [{"unit_id": "P-117", "kind": "car", "distance_m": 412.5, "eta_s": 65}],
            "clock": 1686440130000, "partition": 3}
_EX_TIMELINE = {
    "call_id": "110-20230611-0001",
    "call": {"call_id": "110-20230611-0001", "ts": 1686439800000, "lat": 34.7466, "lon": 113.6253,
             "category": "theft", "priority": 2, "lang": "zh"},
    "zones": ["erqi-03"], "ring": None,
    "nearest_units": [{"unit_id": "P-117", "kind": "car", "distance_m": 412.5, "eta_s": 65, "lat": 34.7503,
                       "lon": 113.6253, "ts": 1686439795000}],
    "corroborating_alerts": [],
    "decision": {"type": "arrived", "unit_id": "P-117", "response_s": 140.0, "ts": 1686439940000},
    "arrival": {"unit_id": "P-117", "response_s": 140.0, "ts": 1686439940000}, "breach": None,
    "status": "arrived",
    "events": [{"ts": 1686439800000, "what": "call"}, {"ts": 1686439800000, "what": "recommended",
                                                        "unit_ids": ["P-117"]},
               {"ts": 1686439940000, "what": "arrived", "unit_id": "P-117"}],
    "clock": 1686439950000, "partition": 3,
}

# name -> (title, description, builder, examples)
_TOPIC_SCHEMAS: dict[str, tuple[str, str, Any, list[Any]]] = {
    topics.CALLS: ("calls.110 record", "An emergency call (CONTRACT §1); key call_id.", _call, [_EX_CALL]),
    topics.GPS: ("patrol.gps record", "A patrol unit's position fix (CONTRACT §1); key unit_id.", _gps,
                 [{"unit_id": "P-117", "ts": _T, "lat": 34.7466, "lon": 113.6253, "status": "busy", "kind": "car",
                   "speed": 8.5, "heading": 270.0}, {"unit_id": "F-3", "ts": _T, "lat": 34.75, "lon": 113.62}]),
    topics.ALERTS: ("camera.alerts record", "A video/AI alert (CONTRACT §1); key camera_id.", _alert,
                    [{"alert_id": "cam-88-20230611-17", "camera_id": "cam-88", "ts": _T, "lat": 34.7471,
                      "lon": 113.6249, "type": "crowd_density", "confidence": 0.91, "severity": 2}]),
    topics.STATUS: ("camera.status record", "A camera health report (CONTRACT §1); key camera_id.", _status,
                    [{"camera_id": "cam-88", "ts": _T, "lat": 34.7471, "lon": 113.6249, "online": False}]),
    topics.INCIDENTS: ("incidents.enriched record", "The call with caller_ref instead of caller, its zones, ring, "
                       "nearest units and corroborating alerts (CONTRACT §4); key call_id.", _enriched, [_EX_ENRICHED]),
    topics.SLA: ("sla.events record", "An arrival, a breach or a call's on-scene tiers, each decided once (CONTRACT "
                 "§3, §4); key call_id.", _sla,
                 [{"type": "arrived", "call_id": "110-20230611-0001", "zone_ids": ["erqi-03"], "unit_id": "P-117",
                   "response_s": 140.0, "ts": 1686439940000},
                  {"type": "breach", "call_id": "110-20230611-0002", "zone_ids": [], "unit_id": None,
                   "response_s": None, "ts": 1686440100000},
                  {"type": "tiers", "call_id": "110-20230611-0001", "zone_ids": ["erqi-03"],
                   "on_scene": {"1m": 1, "3m": 2, "5m": 4}, "met": True, "ts": 1686440100000}]),
    topics.ZONES_STATE: ("zones.state record", "The zone document, as in Redis zw:zone:{zone_id} (CONTRACT §3, "
                         "§4); key zone_id; compacted.", _zone_doc, [_EX_ZONE]),
    topics.ZONES_DAILY: ("zones.daily record", "A zone's local day (CONTRACT §4, contract/topics.py DAILY_FIELDS); "
                         "key \"{date}|{zone_id}\"; compacted; rewritten as the day goes on.", _daily, [_EX_DAILY]),
    topics.DEADLETTER: ("ingest.deadletter record", "A rejected input record and why (CONTRACT §4); key: the "
                        "original key, or null.", _deadletter,
                        [{"topic": "calls.110", "partition": 0, "offset": 17,
                          "reason": "lat 91.0 out of range -90..90",
                          "raw": '{"call_id": "x", "lat": 91.0, "caller_ref": "5f1c0a9e2b7d4c11"}',
                          "raw_encoding": "utf-8"},
                         {"topic": "drill.patrol.gps", "partition": 0, "offset": 3, "reason": "invalid JSON: ...",
                          "raw": "/w==", "raw_encoding": "base64"}]),
}
_TOPIC_SCHEMAS[topics.DUTY] = (
    "duty.events record", "The duty plan's audit trail (CONTRACT §10): a post's status change, a checkpoint "
    "visited or overdue, a phase change with who and when; key post or checkpoint id, or \"phase\".", _duty_event,
    [{"type": "post_status", "post_id": "gate-3", "status": "understaffed", "previous": "manned", "required": 4,
      "present": 3, "ts": _T},
     {"type": "checkpoint_overdue", "checkpoint_id": "cp-12", "unit_id": None, "ts": _T},
     {"type": "phase", "name": "决战", "previous": "临战", "source": "operator", "by": "值班长 王", "ts": _T}])
_EX_POST = {"post_id": "gate-3", "name": "3号门", "lat": 36.06, "lon": 103.83, "radius_m": 50.0, "phase": "决战",
            "required": 4, "present": 3, "unit_ids": ["P-1", "P-2", "A-7"], "status": "understaffed", "since": _T,
            "version": 5}
#: Redis documents (CONTRACT §3; contract/keys.py) and gateway items
_DOC_SCHEMAS: dict[str, tuple[str, str, Any, list[Any]]] = {
    "zone": ("Zone document", "Redis zw:zone:{zone_id} (SET, PUBLISH, and the `state` of zw:zone-updates); "
             "GET /zones, /zones/{id}; the zones.state record (CONTRACT §3).", _zone_doc, [_EX_ZONE]),
    "incident": ("Wall incident", "An entry of the Redis hash zw:incidents and of zw:incident-updates; "
                 "GET /incidents items (docs/DESIGN.md \"Open incidents on the wall\").", _wall_incident, [_EX_WALL]),
    "incident-timeline": ("Incident timeline", "Redis zw:incident:{call_id}, kept 48 h; GET /incidents/{call_id} "
                          "(contract/keys.py incident()).", _timeline, [_EX_TIMELINE]),
    "post": ("Post document", "Redis zw:post:{post_id} (SET, PUBLISH, the `state` of zw:post-updates type post); "
             "GET /posts items (CONTRACT §10).", _post_doc, [_EX_POST]),
    "checkpoint": ("Checkpoint document", "Redis zw:checkpoint:{checkpoint_id} (the `state` of zw:post-updates "
                   "type checkpoint); GET /checkpoints items (CONTRACT §10).", _checkpoint_doc,
                   [{"checkpoint_id": "cp-12", "name": "12号桥", "lat": 36.07, "lon": 103.85, "radius_m": 80.0,
                     "last_visit": _T - 1_000_000, "last_unit": "M-4", "every_s": 900, "overdue": True,
                     "overdue_since": _T - 99_999, "version": 9}]),
    "phase": ("Phase in force", "Redis zw:phase (the `state` of zw:post-updates type phase); GET /plan/phase "
              "(docs/DUTY.md).", _phase_doc,
              [{"name": "决战", "source": "operator", "by": "值班长 王", "since": _T, "previous": "临战",
                "version": 3}]),
    "unit": ("Unit near a point", "GET /units items (Redis zw:units, GEO).", _unit,
             [{"unit_id": "P-117", "lat": 34.7466, "lon": 113.6253, "distance_m": 412.5, "eta_s": 384,
               "status": "available", "kind": "foot", "ts": 1686439790000}]),
}
ZONE_EVENTS = "zone-events"


def names() -> list[str]:
    """Every public schema name (topics first, then Redis documents)."""
    return [*_TOPIC_SCHEMAS, *_DOC_SCHEMAS]


def schema(name: str) -> Schema:
    """The schema `name` (a topic name such as "calls.110", or zone, incident, incident-timeline, unit)."""
    entry = _TOPIC_SCHEMAS.get(name) or _DOC_SCHEMAS.get(name)
    if entry is None:
        raise KeyError(f"no schema {name!r}; known: {', '.join(names())}")
    title, description, build, examples = entry
    return _top(title, description, build(), examples)


def example(name: str, /, **changes: Any) -> dict[str, Any]:
    """A fresh copy of the schema's first example with `changes` (a valid record to build on: the
    gateway's tests and benchmarks write such documents into Redis)."""
    out: dict[str, Any] = json.loads(json.dumps(schema(name)["examples"][0]))
    out.update(changes)
    return out


def published() -> dict[str, Schema]:
    """Every public schema by name: what docs/schemas holds (but zone-events) and the gateway serves."""
    return {n: schema(n) for n in names()}


def openapi_components() -> dict[str, Schema]:
    """Schemas for gateway/openapi.py `components.schemas` (OpenAPI 3.1 uses draft 2020-12)."""
    out = {}
    for comp, name in (("ZoneState", "zone"), ("Incident", "incident"), ("IncidentTimeline", "incident-timeline"),
                       ("Unit", "unit"), ("Post", "post"), ("Checkpoint", "checkpoint"), ("Phase", "phase")):
        s = schema(name)
        s.pop("$schema")
        out[comp] = s
    return out


def record_key(topic: str, record: dict[str, Any]) -> str | None:
    """The Kafka key zonewatch gives an output record (None: no rule, e.g. the dead letter's
    original key); `topic` unprefixed."""
    if topic in (topics.INCIDENTS, topics.SLA):
        return str(record["call_id"])
    if topic == topics.ZONES_STATE:
        return str(record["zone_id"])
    if topic == topics.ZONES_DAILY:
        return f"{record['date']}{DAILY_KEY_SEP}{record['zone_id']}"
    if topic == topics.DUTY:
        return str(record.get("post_id") or record.get("checkpoint_id") or plan.COMMAND_KEY)
    return None


# ------------------------------------------------------------------------ zone-events (internal)


def zone_events_schema(batch_type: Any) -> Schema:
    """The internal zone-events value (msgpack) from its msgspec struct (streams/records.py Batch):
    msgspec's own schema, each positional item titled with its field name."""
    import msgspec

    body = msgspec.json.schema(batch_type)
    defs = body.get("$defs", {})
    seen: set[Any] = set()

    def annotate(t: Any) -> None:
        if t in seen or not isinstance(t, type) or not issubclass(t, msgspec.Struct):
            return
        seen.add(t)
        d = defs.get(t.__name__)
        fields = msgspec.structs.fields(t)
        if d is not None and "prefixItems" in d:
            offset = len(d["prefixItems"]) - len(fields)  # a tagged struct's first item is its tag
            for i, f in enumerate(fields):
                d["prefixItems"][offset + i] = {"title": f.name, **d["prefixItems"][offset + i]}
            if offset:
                d["prefixItems"][0] = {"title": "tag", **d["prefixItems"][0]}
        for f in fields:
            for a in getattr(f.type, "__args__", ()) or ():
                annotate(a)
                for b in getattr(a, "__args__", ()) or ():
                    annotate(b)
            annotate(f.type)

    annotate(batch_type)
    return {"$schema": DIALECT, "title": "zone-events message (internal)",
            "description": "{prefix}{app_id}-zone-events: one message is one Batch, msgpack-encoded (msgspec, "
                           "array-like structs, records tagged by their first item); this schema describes the "
                           "decoded value. Internal: it changes with the worker, not with the contract.",
            **body}


# ---------------------------------------------------------------------------------- AsyncAPI

_KAFKA_BINDING = "0.5.0"
_PREFIX_PARAM = {"description": "ZONEWATCH_TOPIC_PREFIX (empty by default; several deployments share a cluster)",
                 "default": ""}


def _key_schema(topic: str) -> Schema:
    if topic in topics.KEY_FIELD:
        return {"type": "string", "description": f"the record's {topics.KEY_FIELD[topic]} (set by the connector)"}
    if topic in (topics.INCIDENTS, topics.SLA):
        return {"type": "string", "description": "the record's call_id"}
    if topic == topics.ZONES_STATE:
        return {"type": "string", "description": "the record's zone_id"}
    if topic == topics.ZONES_DAILY:
        return {"type": "string", "pattern": _rx(r"\d{4}-\d{2}-\d{2}\|.+"),
                "description": "\"{date}|{zone_id}\" of the record"}
    if topic == topics.DUTY:
        return {"type": "string", "description": "the record's post_id or checkpoint_id, or \"phase\""}
    return {"type": ["string", "null"], "maxLength": events.DEADLETTER_RAW_LIMIT,
            "description": "the rejected record's original key; null when it had none or it was over 64 KiB"}


def _channel_id(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", topic)


def asyncapi(zone_events: bool = True) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of zonewatch's topics, payloads by $ref to docs/schemas/."""
    from .kafka_settings import topic_specs
    from .settings import Settings

    specs = {t.name: t for t in topic_specs(Settings(), 1)}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in (*topics.INPUT_TOPICS, *topics.OUTPUT_TOPICS):
        cid = _channel_id(topic)
        title, description, _build, _ex = _TOPIC_SCHEMAS[topic]
        messages[cid] = {
            "name": cid, "title": title, "summary": description, "contentType": "application/json",
            "payload": {"schemaFormat": "application/schema+json;version=draft-2020-12",
                        "schema": {"$ref": f"./schemas/{topic}.json"}},
            "bindings": {"kafka": {"key": _key_schema(topic), "bindingVersion": _KAFKA_BINDING}},
        }
        spec = specs[topic]
        binding: dict[str, Any] = {"bindingVersion": _KAFKA_BINDING}
        config = {k: ([v] if k == "cleanup.policy" else int(v) if v.isdigit() else v)
                  for k, v in sorted(spec.topic_configs.items())}
        if config:
            binding["topicConfiguration"] = config
        channels[cid] = {"address": "{prefix}" + topic, "title": topic, "description": description,
                         "parameters": {"prefix": _PREFIX_PARAM},
                         "messages": {cid: {"$ref": f"#/components/messages/{cid}"}},
                         "bindings": {"kafka": binding}}
        inbound = topic in topics.INPUT_TOPICS
        operations[("receive_" if inbound else "send_") + cid] = {
            "action": "receive" if inbound else "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": ("connectors publish; the worker consumes (group {app_id}-ingest)" if inbound
                        else "the worker publishes; downstream tools consume"),
            "messages": [{"$ref": f"#/channels/{cid}/messages/{cid}"}],
        }
    if zone_events:
        cid = "zone_events"
        messages[cid] = {
            "name": cid, "title": "zone-events batch (internal)", "contentType": "application/x-msgpack",
            "summary": "batches of normalised events per zone partition, between the worker's stages",
            "payload": {"schemaFormat": "application/schema+json;version=draft-2020-12",
                        "schema": {"$ref": f"./schemas/{ZONE_EVENTS}.json"}},
            "bindings": {"kafka": {"key": {"type": "null", "description": "no key: the partition is chosen "
                                           "by zone / geo cell (streams/partitioning.py)"},
                                   "bindingVersion": _KAFKA_BINDING}},
        }
        channels[cid] = {"address": "{prefix}{app_id}-" + topics.ZONE_EVENTS_SUFFIX,
                         "title": "zone-events (internal)",
                         "description": "The worker's repartition topic (ZONEWATCH_PARTITIONS partitions); "
                                        "not for downstream tools.",
                         "parameters": {"prefix": _PREFIX_PARAM,
                                        "app_id": {"description": "ZONEWATCH_APP_ID", "default": "zonewatch"}},
                         "messages": {cid: {"$ref": f"#/components/messages/{cid}"}},
                         "bindings": {"kafka": {"topicConfiguration": {
                             "retention.ms": topics.ZONE_EVENTS_RETENTION_MS,
                             "max.message.bytes": topics.MAX_INPUT_BYTES}, "bindingVersion": _KAFKA_BINDING}}}
        for action in ("send", "receive"):
            operations[f"{action}_{cid}"] = {"action": action, "channel": {"$ref": f"#/channels/{cid}"},
                                             "messages": [{"$ref": f"#/channels/{cid}/messages/{cid}"}]}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "zonewatch topics", "version": "1.0.0",
                 "description": "Kafka topics of zonewatch (CONTRACT §1, §4). Values are UTF-8 JSON, one object "
                                "per message; payload schemas are JSON Schema draft 2020-12 in docs/schemas/. "
                                "Generated by `make schemas` from contract/schemas.py: do not edit."},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka",
                              "description": "the local stack (`make up`); ZONEWATCH_KAFKA elsewhere"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def to_yaml(data: Any, indent: int = 0) -> str:
    """Block-style YAML of plain data; scalars as JSON (a JSON scalar is a YAML flow scalar)."""
    pad = "  " * indent
    if isinstance(data, dict):
        if not data:
            return "{}\n"
        out = []
        for k, v in data.items():
            key = json.dumps(k) if not re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_.$-]*", k) else k
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{key}:\n{to_yaml(v, indent + 1)}")
            else:
                out.append(f"{pad}{key}: {to_yaml(v, indent + 1).strip()}\n")
        return "".join(out)
    if isinstance(data, list):
        if not data:
            return "[]\n"
        out = []
        for v in data:
            text = to_yaml(v, indent + 1)
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}- {text.lstrip()}")
            else:
                out.append(f"{pad}- {text.strip()}\n")
        return "".join(out)
    return json.dumps(data, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------------ files


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=True) + "\n"


def documents(zone_events: Any = None) -> dict[str, str]:
    """{path relative to docs/: text} of every published file; `zone_events` is the msgspec
    Batch struct (streams/records.py), without it the internal schema and channel are left out."""
    out = {f"schemas/{n}.json": _dump(s) for n, s in published().items()}
    if zone_events is not None:
        out[f"schemas/{ZONE_EVENTS}.json"] = _dump(zone_events_schema(zone_events))
    out["asyncapi.yaml"] = ("# Generated by `make schemas` from contract/schemas.py: do not edit.\n"
                            + to_yaml(asyncapi(zone_events is not None)))
    return out


def write(docs_dir: str | Path, zone_events: Any = None) -> list[str]:
    """Write documents() under docs_dir, remove stale schema files; the paths that changed."""
    root = Path(docs_dir)
    docs = documents(zone_events)
    changed = []
    (root / "schemas").mkdir(parents=True, exist_ok=True)
    for rel, text in docs.items():
        path = root / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(rel)
    for path in sorted((root / "schemas").glob("*.json")):
        rel = f"schemas/{path.name}"
        if rel not in docs:
            path.unlink()
            changed.append(rel)
    return changed
