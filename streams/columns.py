"""Stage 1's columnar decode: a fetched batch of one input topic -> typed events, rejects apart.

`decode_topic` decodes a batch's values with a msgspec decoder of a typed Struct (the contract's
fields, CONTRACT §1; no unknown field, so msgspec reads every byte into a typed field as orjson
would) and checks the common well-formed shape over the whole batch at once (ts and coordinates as
numpy columns, ids and enums as sets). Every value the typed path does not take whole — a
typed-decode error, an extra field, a failed check, an enum outside the set (an unknown force or
alert type the validator maps), null for a defaulted field — goes through
`contract.events.decode_and_validate`, so a dead letter's reason is the contract's and an accepted
event's values are exactly the validator's (tests/unit/streams/test_columnar_route.py checks the
router against today's per-record one). Calls (0.5 % of a district's events, their whole
normalised dict goes into `incidents.enriched`) always take that path.

Each row comes back as the event (a Struct for fixes, alerts and status reports, the validator's
dict for calls) or the reject's reason (a str).
"""

from __future__ import annotations

import msgspec
import numpy as np

from contract import events, topics
from contract.errors import Rejected
from contract.events import ALERT_TYPES, DEFAULT_FORCE, FORCES, MAX_ID_LEN, MIN_TS_MS, UNIT_KINDS, UNIT_STATUSES

_FORCE_SET = frozenset(FORCES)


class Fix(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """patrol.gps, as the contract's fast path accepts it (contract.events.validate_gps)."""
    unit_id: str
    ts: int
    lat: float
    lon: float
    status: str = "available"
    kind: str = "car"
    force: str = DEFAULT_FORCE
    speed: float | None = None
    heading: float | None = None


class Alert(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """camera.alerts (contract.events.validate_alert)."""
    alert_id: str
    camera_id: str
    ts: int
    lat: float
    lon: float
    type: str
    confidence: float
    severity: int = 3


class Status(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """camera.status (contract.events.validate_status)."""
    camera_id: str
    ts: int
    lat: float
    lon: float
    online: bool = True


_STRUCTS: dict[str, type[msgspec.Struct]] = {topics.GPS: Fix, topics.ALERTS: Alert, topics.STATUS: Status}
_DECODERS: dict[str, msgspec.json.Decoder] = {t: msgspec.json.Decoder(s) for t, s in _STRUCTS.items()}
_IDS = {topics.GPS: ("unit_id",), topics.ALERTS: ("alert_id", "camera_id"), topics.STATUS: ("camera_id",)}


def decode_topic(topic: str, values: list, max_ts: int) -> tuple[list, np.ndarray, np.ndarray]:
    """One input topic's values (unprefixed name) -> (per value the event or the reject's reason,
    and the events' lat and lon as columns: NaN in a reject's row)."""
    n = len(values)
    lat = np.full(n, np.nan)
    lon = np.full(n, np.nan)
    decoder = _DECODERS.get(topic)
    rows: list = []
    if decoder is None:   # calls: the contract's validator for every one
        rows = [_validated(topic, v, max_ts) for v in values]
    else:
        decode = decoder.decode
        typed: list[int] = []   # rows the typed decode took, checked below
        for v in values:
            if v is not None:
                try:
                    rows.append(decode(v))
                    typed.append(len(rows) - 1)
                    continue
                # ValueError: msgspec's own UTF-8 errors; RecursionError: nesting beyond Python's limit
                except (msgspec.DecodeError, ValueError, RecursionError):
                    pass
            rows.append(None)
        if typed:
            bad, typed_lat, typed_lon = _failed_checks(topic, [rows[i] for i in typed], [values[i] for i in typed],
                                                       max_ts)
            lat[typed] = typed_lat
            lon[typed] = typed_lon
            for j in bad:
                rows[typed[j]] = None
        for i, row in enumerate(rows):
            if row is None:   # the validator's answer, and its coordinates when it accepts
                ev = rows[i] = _validated(topic, values[i], max_ts)
                lat[i], lon[i] = (np.nan, np.nan) if type(ev) is str else (ev.lat, ev.lon)
        return rows, lat, lon
    for i, row in enumerate(rows):
        if type(row) is dict:
            lat[i], lon[i] = row["lat"], row["lon"]
    return rows, lat, lon


def _validated(topic: str, value, max_ts: int):
    """The contract's answer for one value: its event (as the typed path's Struct where there is
    one) or the reason it is rejected."""
    try:
        ev = events.decode_and_validate(topic, value, max_ts)
    except Rejected as exc:
        return exc.reason
    struct = _STRUCTS.get(topic)
    if struct is None:
        return ev
    return struct(**{f: ev[f] for f in struct.__struct_fields__ if f in ev})


def _failed_checks(topic: str, evs: list, values: list, max_ts: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Positions in evs of the typed rows that the contract's fast path would not accept as they are;
    and their lat and lon columns."""
    n = len(evs)
    ts = [e.ts for e in evs]
    ok = np.ones(n, dtype=bool)
    try:
        ts_col = np.array(ts, dtype=np.int64)
    except OverflowError:   # an int beyond 64 bits: compared one by one
        ts_col = None
        ok &= np.array([MIN_TS_MS <= t <= max_ts for t in ts], dtype=bool)
    if ts_col is not None:
        ok &= (ts_col >= MIN_TS_MS) & (ts_col <= max_ts)
    lat = np.array([e.lat for e in evs], dtype=np.float64)
    lon = np.array([e.lon for e in evs], dtype=np.float64)
    ok &= (np.abs(lat) <= 90.0) & (np.abs(lon) <= 180.0)
    for name in _IDS[topic]:
        ids = [getattr(e, name) for e in evs]
        lens = np.fromiter(map(len, ids), dtype=np.int64, count=n)
        ok &= (lens > 0) & (lens <= MAX_ID_LEN)
        if not "".join(ids).isprintable():
            ok &= np.fromiter((i.isprintable() for i in ids), dtype=bool, count=n)
    if topic == topics.GPS:
        _in_set(ok, [e.status for e in evs], UNIT_STATUSES)
        _in_set(ok, [e.kind for e in evs], UNIT_KINDS)
        _in_set(ok, [e.force for e in evs], _FORCE_SET)   # another force is police: the validator says so
        speeds, headings = [e.speed for e in evs], [e.heading for e in evs]
        if speeds.count(None) != n:   # the optional extras, one by one only when a batch has them
            ok &= np.array([s is None or 0.0 <= s <= events.MAX_FLOAT for s in speeds], dtype=bool)
        if headings.count(None) != n:
            ok &= np.array([h is None or 0.0 <= h <= 360.0 for h in headings], dtype=bool)
    elif topic == topics.ALERTS:
        _in_set(ok, [e.type for e in evs], ALERT_TYPES)   # another type is "other": the validator says so
        conf = np.array([e.confidence for e in evs], dtype=np.float64)
        ok &= (conf >= 0.0) & (conf <= 1.0) & np.array([1 <= e.severity <= 4 for e in evs], dtype=bool)
    _unsafe(ok, values)
    return np.flatnonzero(~ok).tolist(), lat, lon


def _in_set(ok: np.ndarray, col: list[str], allowed: frozenset) -> None:
    if not set(col) <= allowed:
        ok &= np.fromiter((c in allowed for c in col), dtype=bool, count=len(col))


def _unsafe(ok: np.ndarray, values: list[bytes]) -> None:
    """Clear `ok` for values that are not UTF-8 (orjson refuses them). With no unknown field allowed,
    msgspec has read every byte of a value into a typed field and refused such bytes already (and
    numbers beyond a double, and nesting): this is the cheap guard that keeps it so, a C check of the
    whole batch and a decode of the non-ASCII values only."""
    if not b" ".join(values).isascii():
        for i, v in enumerate(values):
            if not v.isascii():
                try:
                    v.decode("utf-8")
                except UnicodeDecodeError:
                    ok[i] = False
