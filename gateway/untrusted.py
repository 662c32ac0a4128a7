"""What the gateway reads from Redis, checked against the contract's JSON Schemas before it is served
or streamed (issue 24). The worker writes `zw:*`, but so can a bug, an operator's redis-cli or whoever
holds a stolen worker credential: one bad record must not answer 500, drop every wall's stream or put
raw text into an SSE frame.

    ZONE, INCIDENT, TIMELINE, UNIT      a Kind per schema (zone, incident, incident-timeline, unit)
    POST, CHECKPOINT, PHASE; DUTY       the duty plan's documents; a zw:post-updates `type` -> its Kind
    kind.read(raw, where)    -> Checked(json, order) or None: stored bytes, checked; `json` is one line
    kind.parse(raw, where)   -> the parsed value, checked, or None (a fresh value the caller may change)
    kind.conforms(value, where) -> bool, for a value the gateway built from several Redis reads

A record that fails is skipped: counted each time (zonewatch_gateway_bad_records_total{kind}) and
logged the first time that exact record is seen, with where it is and why, never its content. `read`
keeps the verdicts of the last CACHE_SIZE records it saw, so the zone documents of a snapshot, which
the feed's reader has mostly checked already as updates, cost a dictionary lookup each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from contract import schemas
from gateway.metrics import BAD_RECORDS
from gateway.schemacheck import compile_schema

log = logging.getLogger("zonewatch.gateway")

CACHE_SIZE = 4096        # records whose verdict `read` keeps (about the documents of two snapshots of a city)
LOGGED_SIZE = 10_000     # bad records remembered as logged; past it the memory starts afresh
_BAD = object()          # the cached verdict of a record that failed


class Checked(NamedTuple):
    json: bytes          # the record as one line of JSON (the stored bytes when they are one line)
    order: Any           # what the kind sorts by (incidents: call time, then call id), else None


class Kind:
    """One schema's records: checked, skipped when they fail, counted and logged once."""

    def __init__(self, name: str, schema: str, order: Callable[[Any], Any] | None = None):
        self.name = name
        self.check = compile_schema(schemas.schema(schema))
        self.order = order
        self.cache: dict[bytes, Checked | object] = {}
        self.logged: set[int] = set()
        self.bad = BAD_RECORDS.labels(name)

    def read(self, raw: bytes | str | None, where: str) -> Checked | None:
        if isinstance(raw, str):
            raw = raw.encode()
        if raw is None:
            self.reject(b"", where, "absent")
            return None
        hit = self.cache.get(raw)
        if hit is None:
            hit = self._verdict(raw, where)
            if len(self.cache) >= CACHE_SIZE:
                del self.cache[next(iter(self.cache))]      # the oldest verdict
            self.cache[raw] = hit
        elif hit is _BAD:
            self.reject(raw, where, "")
        return hit if isinstance(hit, Checked) else None

    def _verdict(self, raw: bytes, where: str) -> Checked | object:
        value = self._loads(raw, where)
        if value is None:
            return _BAD
        # SSE ends a field at CR or LF: stored bytes with either (JSON whitespace) are encoded again
        one_line = orjson.dumps(value) if b"\n" in raw or b"\r" in raw else raw
        return Checked(one_line, self.order(value) if self.order else None)

    def parse(self, raw: bytes | str | None, where: str, prepare: Callable[[Any], Any] | None = None) -> Any | None:
        """`prepare` changes the parsed value before it is checked (the timeline: callers removed)."""
        if raw is None:
            self.reject(b"", where, "absent")
            return None
        return self._loads(raw.encode() if isinstance(raw, str) else raw, where, prepare)

    def _loads(self, raw: bytes, where: str, prepare: Callable[[Any], Any] | None = None) -> Any | None:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.reject(raw, where, "not JSON")
            return None
        if prepare is not None:
            value = prepare(value)
        why = self.check(value)
        if why is not None:
            self.reject(raw, where, why)
            return None
        return value

    def conforms(self, value: Any, where: str) -> bool:
        why = self.check(value)
        if why is None:
            return True
        self.reject(orjson.dumps(value), where, why)
        return False

    def reject(self, raw: bytes, where: str, why: str) -> None:
        """Count a skipped record; log it if this exact record was not logged before (`why` is
        empty for a cached verdict: it was logged when first seen)."""
        self.bad.inc()
        key = hash((where, raw))
        if not why or key in self.logged:
            return
        if len(self.logged) >= LOGGED_SIZE:
            self.logged.clear()
        self.logged.add(key)
        # repr: `where` and `why` may carry ids and member names from the data (newlines, anything)
        log.warning("skipped %s: it does not match the %s schema (%s); not logged again",
                    repr(where)[:200], self.name, repr(why)[:200])


def _incident_order(value: dict) -> tuple:
    return value["ts"], value["call_id"]


ZONE = Kind("zone", "zone")
INCIDENT = Kind("incident", "incident", order=_incident_order)
TIMELINE = Kind("incident-timeline", "incident-timeline")
UNIT = Kind("unit", "unit")
# the duty plan's documents (CONTRACT §10): zw:post:{id}, zw:checkpoint:{id}, zw:phase, and zw:post-updates
POST = Kind("post", "post")
CHECKPOINT = Kind("checkpoint", "checkpoint")
PHASE = Kind("phase", "phase")
#: a zw:post-updates entry's `type` -> the kind of its `state`
DUTY = {"post": POST, "checkpoint": CHECKPOINT, "phase": PHASE}
