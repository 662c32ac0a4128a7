"""The internal records between stages: the schema of `{prefix}{app_id}-zone-events`.

One Kafka message of that topic is one `Batch`: the stream clock the sender had and the records
of one ingest batch for one partition, msgpack-encoded (msgspec, tagged arrays: compact on the
wire, named fields in code). Every field means one thing whatever the record's kind.

Records for the zone stage (partitioned by zone, streams/partitioning.py):
    ZoneCall, ZoneAlert, ZoneFix,  an accepted input event, with the ids of its zones that
    ZoneStatus
                                   belong to the partition; `primary` is true in exactly one
                                   partition per event (that copy is counted in the metrics)
    Arrival                        the incidents stage decided an arrival (the feedback loop)
    Tiers                          the incidents stage decided a call's on-scene tiers (the same loop)
Records for the incidents stage (partitioned by the call's geo cell):
    IncidentCall, IncidentAlert, IncidentFix   (an IncidentFix also feeds the duty plan's posts)
Records for the duty plan (streams/duty.py):
    PhaseCommand                   an operator's phase command, to every partition
    DutyNote                       a post's status or a checkpoint's overdue, for its zones' partitions

Versions: a field added to a record goes at its end with a default, so a log written before it
still decodes (msgspec fills the default into a shorter array): ZoneFix.force (v3, "police"),
ZoneFix.cell (v3, 0: the reader computes it), IncidentFix.available and .kind, IncidentFix.status
and .force (the duty plan, ""). A new record kind takes a new tag.
"""

from __future__ import annotations

from typing import final

import msgspec


class _Record(msgspec.Struct, array_like=True, tag_field="k", gc=False, frozen=True):
    # msgspec passes frozen on to subclasses, mypy (dataclass_transform) does not: each record
    # repeats it. @final: no record is subclassed, so `type(r) is ZoneCall` narrows both ways.
    pass


@final
class ZoneCall(_Record, tag=1, frozen=True):
    call_id: str
    ts: int
    zones: list[str]
    primary: bool
    kafka_ts: int          # the input message's Kafka timestamp (e2e latency)
    category: str
    priority: int
    lang: str              # BCP 47 primary language subtag, "und" when the call has none


@final
class ZoneAlert(_Record, tag=2, frozen=True):
    alert_id: str
    ts: int
    zones: list[str]
    primary: bool
    kafka_ts: int
    type: str
    severity: int
    camera_id: str
    presence: bool         # the camera's newest report so far: its position decides its zone


@final
class ZoneFix(_Record, tag=3, frozen=True):
    unit_id: str
    ts: int
    zones: list[str]
    primary: bool
    kafka_ts: int
    status: str
    kind: str
    presence: bool         # the unit's newest fix so far: it decides where the unit is present
    lat: float             # its position (the reach and coverage of the partition's zones)
    lon: float
    force: str = "police"  # v3 (contract.events.FORCES); a record written before it was police
    cell: int = 0          # v3: its fine H3 cell (coverage); 0 in a record written before it


@final
class ZoneStatus(_Record, tag=8, frozen=True):
    """A camera status report (camera.status), for the zones' health."""
    camera_id: str
    ts: int
    zones: list[str]
    primary: bool
    kafka_ts: int
    online: bool
    presence: bool


@final
class Arrival(_Record, tag=4, frozen=True):
    """An arrival decided by the incidents stage, for the zone partitions of the call's zones."""
    call_id: str
    call_ts: int
    zones: list[str]
    response_s: float
    unit_id: str


@final
class Tiers(_Record, tag=9, frozen=True):
    """A call's on-scene tiers decided by the incidents stage, for the zone partitions of its zones:
    distinct units on scene by 1, 3 and 5 minutes (contract.response.TIERS_S)."""
    call_id: str
    call_ts: int
    zones: list[str]
    on_scene: tuple[int, int, int]


@final
class IncidentCall(_Record, tag=5, frozen=True):
    call_id: str
    ts: int
    zones: list[str]
    kafka_ts: int
    cell: int              # fine H3 cell of the call (h3's 64-bit int form)
    record: dict           # the `incidents.enriched` record as far as ingest knows it


@final
class IncidentAlert(_Record, tag=6, frozen=True):
    alert_id: str
    ts: int
    lat: float
    lon: float
    type: str
    cell: int


@final
class IncidentFix(_Record, tag=7, frozen=True):
    unit_id: str
    ts: int
    lat: float
    lon: float
    cell: int
    # for the dispatch recommendation; a record written before they existed reads as not available
    available: bool = False
    kind: str = ""
    # for the duty plan's posts (streams/duty.py); "" in a record written before they existed
    status: str = ""
    force: str = ""


@final
class PhaseCommand(_Record, tag=10, frozen=True):
    """An operator's phase command (the plan.commands topic), for every partition (streams/duty.py)."""
    command_id: str
    ts: int
    name: str | None       # None: back to the schedule
    by: str


@final
class DutyNote(_Record, tag=11, frozen=True):
    """A post's status decided by its owner (a change, or the status again at a local midnight) or
    a checkpoint that became overdue (status "overdue"), for the partitions of the zones it lies in."""
    point_id: str
    zones: list[str]
    ts: int
    status: str


Record = (ZoneCall | ZoneAlert | ZoneFix | ZoneStatus | Arrival | Tiers | IncidentCall | IncidentAlert | IncidentFix
          | PhaseCommand | DutyNote)
ZONE_EVENTS = (ZoneCall, ZoneAlert, ZoneFix, ZoneStatus)
#: metric label `source` of a zone-stage event record
SOURCE: dict[type, str] = {ZoneCall: "calls", ZoneAlert: "alerts", ZoneFix: "gps", ZoneStatus: "status"}


class Batch(msgspec.Struct, array_like=True, gc=False):
    """One zone-events message. `gps`: per patrol.gps input partition the sender reads,
    [partition, largest ts accepted from it, wall ms of its last delivery]; `wall`: the sender's
    wall clock (ms) when it made the batch. The watermark moves on the marks and on `wall`
    (streams/watermark.py), so a replay of the log after a takeover decides exactly what the live
    run decided. A batch without events is an ingest's heartbeat (sent each second it routes
    nothing: Router.zone_events). `layout`: the version of the partitioning that routed the
    records (streams/partitioning.py `layout_version`); 0 in the state stage's arrival batches
    and in batches written before it was carried (home cells were hashed then)."""
    clock: int
    events: list[Record]
    gps: list[tuple[int, int, int]] = []
    wall: int = 0
    layout: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)

#: bytes per zone-events message (the producer's batch size; a record is at most ~25 KB)
MAX_PAYLOAD_BYTES = 1 << 20


def encode(clock: int, events: list, gps: list | None = None, wall: int = 0, layout: int = 0) -> bytes:
    return _encoder.encode(Batch(clock, events, gps or [], wall, layout))


def decode(value: bytes) -> Batch:
    return _decoder.decode(value)


def encode_split(events: list, clock: int, prev_clock: int, limit: int = MAX_PAYLOAD_BYTES,
                 gps: list | None = None, wall: int = 0, layout: int = 0) -> list[bytes]:
    """The zone-events messages for one partition's records of a batch: one, or several of at
    most `limit` bytes when the batch is bigger (5000 maximal valid calls are ~120 MB, beyond
    any request size). All but the last carry `prev_clock`, which every partition already has:
    the state stage applies a message's events before its clock, so splitting changes nothing."""
    payload = encode(clock, events, gps, wall, layout)
    if len(payload) <= limit or len(events) <= 1:
        return [payload]
    n = max(1, len(events) * limit * 9 // (10 * len(payload)))
    parts = [events[i:i + n] for i in range(0, len(events), n)]
    out = []
    for j, part in enumerate(parts):
        last = j == len(parts) - 1
        out.extend(encode_split(part, clock if last else prev_clock, prev_clock, limit,
                                gps if last else None, wall, layout))
    return out
