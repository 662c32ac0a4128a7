"""Input records (CONTRACT §1), the dead-letter record (§4) and personal data (§6).

The validator is on the hot path: plain dict checks, no model objects. It is the one validator
of zonewatch: the worker, `POST /ingest` and the connectors' checks all call it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from .errors import Rejected
from .topics import ALERTS, CALLS, GPS, STATUS

CATEGORIES = frozenset(
    "violent theft fraud traffic fire medical dispute public_order lost_and_found assistance other".split()
)
ALERT_TYPES = frozenset(
    "face_watchlist vehicle_watchlist crowd_density fence_intrusion drone abandoned_object fight "
    "fire_smoke other".split()
)
UNIT_STATUSES = frozenset(("available", "busy", "off_duty"))
UNIT_KINDS = frozenset(("foot", "car", "motorcycle", "swat", "other"))
#: patrol.gps `force` (CONTRACT §1 v3): police (default), auxiliary (辅警), volunteer (群防群治, 义警),
#: security (guards); any other string is taken as police
FORCES = ("police", "auxiliary", "volunteer", "security")
DEFAULT_FORCE = "police"
_FORCE_SET = frozenset(FORCES)

MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_ID_LEN = 64
MAX_TEXT_LEN = 4096
MAX_TS_STR_LEN = 64
DEADLETTER_RAW_LIMIT = 64 * 1024
MAX_FLOAT = 1.7976931348623157e308
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)





def parse_ts(value: Any) -> int:
    """`ts` as epoch ms: an int (epoch ms) or an RFC 3339 string with an offset."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        # fromisoformat stops at an embedded NUL ("...+08:00\x00junk" parses) and takes any
        # character as the date/time separator: only short printable ASCII reaches it.
        if len(value) > MAX_TS_STR_LEN or not value.isascii() or not value.isprintable():
            raise Rejected(f"ts {value[:40]!r} is not RFC 3339")
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise Rejected(f"ts {value[:40]!r} is not RFC 3339") from None
        if dt.tzinfo is None:
            raise Rejected("ts string has no UTC offset")
        # exact integer ms: int(dt.timestamp() * 1000) is 1 ms early for ~0.6% of ".sss" strings
        return (dt - _EPOCH) // _MS
    if isinstance(value, bool) or value is None:
        raise Rejected("ts must be epoch ms (int) or an RFC 3339 string")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise Rejected("ts must be epoch ms (int) or an RFC 3339 string")


def _ident(ev: dict, name: str) -> str:
    v = ev.get(name)
    if v is None:
        raise Rejected(f"missing field {name}")
    if type(v) is not str:
        raise Rejected(f"{name} must be a string")
    if not 0 < len(v) <= MAX_ID_LEN:
        raise Rejected(f"{name} must be 1..{MAX_ID_LEN} chars")
    if not v.isprintable():
        raise Rejected(f"{name} contains control characters")
    return v


def _coord(ev: dict, name: str, limit: float) -> float:
    v = ev.get(name)
    if v is None:
        raise Rejected(f"missing field {name}")
    t = type(v)
    if t is not float and t is not int:
        raise Rejected(f"{name} must be a number")
    # Compare before float(): an int beyond the float range (Python callers) would overflow.
    if not (-limit <= v <= limit):  # NaN fails this comparison too
        raise Rejected(f"{name} {_num(float(v) if t is float or -1e15 < v < 1e15 else v)} "
                       f"out of range -{limit:g}..{limit:g}")
    return float(v)


def _int_in(ev: dict, name: str, lo: int, hi: int, default: int | None = None) -> int:
    v = ev.get(name)
    if v is None:
        if default is None:
            raise Rejected(f"missing field {name}")
        return default
    if type(v) is not int:
        if type(v) is float and v.is_integer():
            v = int(v)
        else:
            raise Rejected(f"{name} must be an integer")
    if not lo <= v <= hi:
        raise Rejected(f"{name} {_num(v)} out of range {lo}..{hi}")
    return v


def _num(v: int | float) -> str:
    """A number for a reason: bounded (str() of a 5000-digit int raises, and reasons stay short)."""
    if type(v) is int and not -10**15 < v < 10**15:
        return f"{'-' if v < 0 else ''}<{len(str(abs(v))) if v.bit_length() < 10_000 else 'huge'}-digit integer>"
    if type(v) is float and not -1e15 < v < 1e15:
        return f"{v:.6g}"
    return str(v)


def _ts(ev: dict, max_ts: int) -> int:
    if "ts" not in ev:
        raise Rejected("missing field ts")
    ts = parse_ts(ev["ts"])
    if ts < MIN_TS_MS:
        raise Rejected("ts before 2000-01-01")
    if ts > max_ts:
        raise Rejected("ts too far in the future (beyond host clock + tolerance)")
    return ts


def _opt_str(ev: dict, name: str, max_len: int) -> str | None:
    v = ev.get(name)
    if v is None:
        return None
    if type(v) is not str:
        raise Rejected(f"{name} must be a string")
    if len(v) > max_len:
        raise Rejected(f"{name} longer than {max_len} chars")
    return v


def validate_call(ev: dict, max_ts: int) -> dict:
    """Normalised call dict or `Rejected`."""
    call_id = _ident(ev, "call_id")
    ts = _ts(ev, max_ts)
    lat = _coord(ev, "lat", 90.0)
    lon = _coord(ev, "lon", 180.0)
    cat = ev.get("category")
    if cat is None:
        raise Rejected("missing field category")
    if type(cat) is not str:
        raise Rejected("category must be a string")
    if cat not in CATEGORIES:
        cat = "other"
    prio = _int_in(ev, "priority", 1, 4)
    out = {"call_id": call_id, "ts": ts, "lat": lat, "lon": lon, "category": cat, "priority": prio}
    caller = _opt_str(ev, "caller", 64)
    if caller is not None:
        out["caller"] = caller
    lang = _opt_str(ev, "lang", 35)
    if lang is not None:
        out["lang"] = lang
    text = _opt_str(ev, "text", MAX_TEXT_LEN)
    if text is not None:
        out["text"] = text
    return out


def validate_gps(ev: dict, max_ts: int) -> dict:
    """Normalised patrol fix dict or `Rejected`."""
    # Fast path for the overwhelmingly common well-formed fix (ints/floats of the right type and
    # range, no optional extras to check); anything else takes the checked path below.
    unit_id = ev.get("unit_id")
    ts = ev.get("ts")
    lat = ev.get("lat")
    lon = ev.get("lon")
    status = ev.get("status", "available")
    kind = ev.get("kind", "car")
    force = ev.get("force", DEFAULT_FORCE)
    if (type(unit_id) is str and 0 < len(unit_id) <= MAX_ID_LEN and type(ts) is int
            and MIN_TS_MS <= ts <= max_ts and type(lat) is float and -90.0 <= lat <= 90.0
            and type(lon) is float and -180.0 <= lon <= 180.0 and type(status) is str
            and status in UNIT_STATUSES and type(kind) is str and kind in UNIT_KINDS
            and type(force) is str and force in _FORCE_SET and unit_id.isprintable()):
        speed = ev.get("speed")
        heading = ev.get("heading")
        if ((speed is None or (type(speed) is float and 0.0 <= speed < math.inf))
                and (heading is None or (type(heading) is float and 0.0 <= heading <= 360.0))):
            out = {"unit_id": unit_id, "ts": ts, "lat": lat, "lon": lon, "status": status, "kind": kind,
                   "force": force}
            if speed is not None:
                out["speed"] = speed
            if heading is not None:
                out["heading"] = heading
            return out
    return _validate_gps_checked(ev, max_ts)


def _validate_gps_checked(ev: dict, max_ts: int) -> dict:
    unit_id = _ident(ev, "unit_id")
    ts = _ts(ev, max_ts)
    lat = _coord(ev, "lat", 90.0)
    lon = _coord(ev, "lon", 180.0)
    status = ev.get("status", "available")
    if status is None:
        status = "available"
    if type(status) is not str or status not in UNIT_STATUSES:
        raise Rejected(f"status must be one of {sorted(UNIT_STATUSES)}")
    kind = ev.get("kind", "car")
    if kind is None:
        kind = "car"
    if type(kind) is not str or kind not in UNIT_KINDS:
        raise Rejected(f"kind must be one of {sorted(UNIT_KINDS)}")
    force = ev.get("force")
    if force is None:
        force = DEFAULT_FORCE
    elif type(force) is not str:
        raise Rejected("force must be a string")
    elif force not in _FORCE_SET:  # unknown -> police (CONTRACT §1), like an unknown category -> other
        force = DEFAULT_FORCE
    out = {"unit_id": unit_id, "ts": ts, "lat": lat, "lon": lon, "status": status, "kind": kind,
           "force": force}
    speed = ev.get("speed")
    if speed is not None:
        # an int beyond the float range is not a finite float speed (and float() would overflow)
        if type(speed) not in (int, float) or not (0 <= speed <= MAX_FLOAT):
            raise Rejected("speed must be a finite number >= 0")
        out["speed"] = float(speed)
    heading = ev.get("heading")
    if heading is not None:
        if type(heading) not in (int, float) or not (0 <= heading <= 360):
            raise Rejected("heading must be a number 0..360")
        out["heading"] = float(heading)
    return out


def validate_alert(ev: dict, max_ts: int) -> dict:
    """Normalised camera alert dict or `Rejected`."""
    alert_id = _ident(ev, "alert_id")
    camera_id = _ident(ev, "camera_id")
    ts = _ts(ev, max_ts)
    lat = _coord(ev, "lat", 90.0)
    lon = _coord(ev, "lon", 180.0)
    typ = ev.get("type")
    if typ is None:
        raise Rejected("missing field type")
    if type(typ) is not str:
        raise Rejected("type must be a string")
    if typ not in ALERT_TYPES:
        typ = "other"
    conf = ev.get("confidence")
    if conf is None:
        raise Rejected("missing field confidence")
    if type(conf) not in (int, float) or not (0 <= conf <= 1):
        raise Rejected("confidence must be a number 0..1")
    sev = _int_in(ev, "severity", 1, 4, default=3)
    return {"alert_id": alert_id, "camera_id": camera_id, "ts": ts, "lat": lat, "lon": lon,
            "type": typ, "confidence": float(conf), "severity": sev}


def validate_status(ev: dict, max_ts: int) -> dict:
    """Normalised camera status report dict or `Rejected`; `online` defaults to true."""
    camera_id = _ident(ev, "camera_id")
    ts = _ts(ev, max_ts)
    lat = _coord(ev, "lat", 90.0)
    lon = _coord(ev, "lon", 180.0)
    online = ev.get("online")
    if online is None:
        online = True
    elif type(online) is not bool:
        raise Rejected("online must be a boolean")
    return {"camera_id": camera_id, "ts": ts, "lat": lat, "lon": lon, "online": online}


VALIDATORS = {CALLS: validate_call, GPS: validate_gps, ALERTS: validate_alert, STATUS: validate_status}


def decode_and_validate(topic: str, value: bytes | None, max_ts: int) -> dict:
    """Decode one raw message value of an input topic (unprefixed name) and validate it."""
    if value is None:
        raise Rejected("empty message value")
    try:
        ev = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Rejected(f"invalid JSON: {str(exc)[:120]}") from None
    if type(ev) is not dict:
        raise Rejected("message is not a JSON object")
    return VALIDATORS[topic](ev, max_ts)


def deadletter_record(topic: str, partition: int, offset: int, reason: str, raw: bytes | None) -> bytes:
    """The `ingest.deadletter` value (CONTRACT §4): raw as text, or base64 when not UTF-8."""
    raw = raw or b""
    raw = raw[:DEADLETTER_RAW_LIMIT]
    try:
        text = raw.decode("utf-8")
        # A cut through a multi-byte character is not valid UTF-8 any more: fall back to base64.
        encoding = "utf-8"
    except UnicodeDecodeError:
        text = base64.b64encode(raw).decode("ascii")
        encoding = "base64"
    return orjson.dumps({"topic": topic, "partition": partition, "offset": offset,
                         "reason": reason, "raw": text, "raw_encoding": encoding})


def to_epoch_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


# --- personal data (CONTRACT §6) ---------------------------------------------------------------

# The key, also with any of its letters written as a JSON \u escape ("call\u0065r" is "caller").
_CALLER_KEY = b"".join(b"(?:" + bytes([c]) + b"|\\\\u00" + f"{c:02x}".encode().replace(b"c", b"[cC]") + b")"
                       for c in b"caller")
_CALLER_FIELD = re.compile(rb'"' + _CALLER_KEY + rb'"\s*:\s*')
_OPEN, _CLOSE = b"[{", b"]}"


def _value_end(raw: bytes, i: int) -> int:
    """Where the JSON value starting at raw[i] ends (exclusive), for a possibly broken message: a
    string to its closing quote; an array or object to its matching bracket at any depth (brackets
    inside strings and mismatched closers do not count); anything else (a wrongly typed bare word
    or number) up to the next `,`, `}` or `]`. A value cut off runs to the end of the message."""
    n = len(raw)
    if i >= n:
        return n
    c = raw[i]
    if c == 0x22:  # "
        j = i + 1
        while j < n:
            b = raw[j]
            if b == 0x5C:  # backslash: skip the escaped byte
                j += 2
            elif b == 0x22:
                return j + 1
            else:
                j += 1
        return n
    if c in _OPEN:
        stack = []
        j = i
        while j < n:
            b = raw[j]
            if b == 0x22:
                j = _value_end(raw, j)
                continue
            if b in _OPEN:
                stack.append(_CLOSE[_OPEN.index(b)])
            elif stack and b == stack[-1]:
                stack.pop()
                if not stack:
                    return j + 1
            j += 1
        return n
    j = i
    while j < n and raw[j] not in b",}]":
        j += 1
    return j


def redact_callers(raw: bytes, secret: bytes) -> bytes:
    """Replace every `"caller": ...` in a raw (possibly broken) message by its `caller_ref`,
    so rejected calls do not carry phone numbers into the dead-letter topic (CONTRACT §6).

    Every spelling of the key (letters as JSON \\u escapes), at any place in the message, and its
    whole value whatever its type: a string, a bare word or number, or an array or object nested to
    any depth (its ref is then the HMAC of the value's text)."""
    if b"caller" not in raw and b"\\u00" not in raw:
        return raw
    out = []
    pos = 0
    while True:
        m = _CALLER_FIELD.search(raw, pos)
        if m is None:
            break
        start = m.end()
        end = _value_end(raw, start)
        value = raw[start:end]
        if value[:1] == b'"':
            number, keep = value[1:-1] if len(value) > 1 and value.endswith(b'"') else value[1:], b""
        else:
            stripped = value.rstrip()
            number, keep = stripped, value[len(stripped):]
        out.append(raw[pos:m.start()])
        if secret:
            out.append(b'"caller_ref":"' + caller_ref(number.decode("utf-8", "replace"), secret).encode() + b'"')
        else:
            out.append(b'"caller_ref":null')
        out.append(keep)
        pos = end
    out.append(raw[pos:])
    return b"".join(out)


def deadletter_key(key: bytes | None) -> bytes | None:
    """The original key, or null when it is larger than the dead-letter raw limit: a multi-MB
    key would make the broker refuse the dead letter (and stop ingest)."""
    return key if key is None or len(key) <= DEADLETTER_RAW_LIMIT else None


def caller_ref(number: str, secret: bytes) -> str:
    """CONTRACT §6: HMAC-SHA256 of the caller's number under the configured secret, 16 hex chars."""
    return hmac.new(secret, number.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
