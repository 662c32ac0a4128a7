"""Compact memory of call and alert ids for duplicate detection over a day (CONTRACT §1).

An id counts once while its `ts` is within DEDUP_HORIZON_MS (26 h, a day in any time zone plus
the longest window) of the stream clock. At district load that is millions of alert ids a day:
as strings in a Python set they cost ~100 bytes each, so ids are kept as 64-bit BLAKE2b hashes.
The ids first seen in the current hour of the stream clock are a Python set; when the clock enters
a new hour that set is sealed into a sorted numpy array (8 bytes an id) that never changes again,
so a snapshot writes each sealed hour once. A false duplicate needs a 64-bit collision: with 10
million ids remembered, about 5e-13 per new id. Measured (tracemalloc, bench/state_sizes.py; docs/
BENCHMARKS.md "Sizes for Sizing"): 8 B per id of a sealed hour, 73 B per id of the open hour, so
10.2 B held per id of a day; 8 B per id in the snapshots topic.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from hashlib import blake2b

import numpy as np

from contract.response import DEDUP_HORIZON_MS

HOUR_MS = 3_600_000


def id_hash(kind: str, event_id: str) -> int:
    return int.from_bytes(blake2b(f"{kind}|{event_id}".encode(), digest_size=8).digest(), "little")


class IdMemory:
    """Hashes of ids seen: `hit_sealed` (a batch at once) then `seen` per id."""

    def __init__(self, horizon_ms: int = DEDUP_HORIZON_MS):
        self.horizon_ms = horizon_ms
        self.open_hour: int | None = None
        self.open: set[int] = set()
        self.open_max_ts = 0
        self.sealed: dict[int, np.ndarray] = {}    # arrival hour -> sorted uint64 hashes
        self.sealed_max_ts: dict[int, int] = {}    # arrival hour -> largest ts among its ids

    def __len__(self) -> int:
        return len(self.open) + sum(len(a) for a in self.sealed.values())

    def nbytes(self) -> int:
        """Memory held, estimated: an open-hour id (a set entry with its int object) measured 73 bytes,
        a sealed one 8 (the module doc)."""
        return len(self.open) * 73 + sum(a.nbytes for a in self.sealed.values())

    def advance(self, clock: int) -> None:
        """Seal the open hour when the clock leaves it; forget hours beyond the horizon."""
        hour = clock // HOUR_MS
        if self.open_hour is None:
            self.open_hour = hour
        elif hour > self.open_hour:
            if self.open:
                self.sealed[self.open_hour] = np.array(sorted(self.open), dtype=np.uint64)
                self.sealed_max_ts[self.open_hour] = self.open_max_ts
            self.open = set()
            self.open_max_ts = 0
            self.open_hour = hour
        # an hour's ids can all be forgotten once its largest ts is beyond the horizon (an id can
        # carry a ts ahead of the clock it arrived at: the clock moves after its batch)
        horizon = clock - self.horizon_ms
        for h in [h for h, t in self.sealed_max_ts.items() if t < horizon]:
            del self.sealed[h]
            del self.sealed_max_ts[h]

    def hit_sealed(self, hashes: list[int]) -> set[int]:
        """Which of these hashes the sealed hours hold (vectorised: one search per hour)."""
        if not self.sealed or not hashes:
            return set()
        keys = np.array(hashes, dtype=np.uint64)
        hit = np.zeros(len(keys), dtype=bool)
        for arr in self.sealed.values():
            idx = arr.searchsorted(keys)
            idx[idx >= len(arr)] = len(arr) - 1
            hit |= arr[idx] == keys
        return {int(k) for k in keys[hit]}

    def seen(self, h: int, ts: int, clock: int, sealed_hits: AbstractSet[int]) -> bool:
        """True when the id was seen before; otherwise remember it if it can still matter."""
        if h in self.open or h in sealed_hits:
            return True
        if ts >= clock - self.horizon_ms:
            self.open.add(h)
            if ts > self.open_max_ts:
                self.open_max_ts = ts
        return False

    # -- snapshots ---------------------------------------------------------------------------
    def open_bytes(self) -> bytes:
        return np.array(sorted(self.open), dtype=np.uint64).tobytes()

    @classmethod
    def restore(cls, snap: dict, sealed: dict[int, bytes], horizon_ms: int = DEDUP_HORIZON_MS) -> IdMemory:
        m = cls(horizon_ms)
        m.open_hour = snap["open_hour"]
        m.open = {int(x) for x in np.frombuffer(snap["open"], dtype=np.uint64)}
        m.open_max_ts = snap["open_max_ts"]
        for h, t in snap["sealed_max_ts"].items():
            if int(h) in sealed:
                m.sealed[int(h)] = np.frombuffer(sealed[int(h)], dtype=np.uint64).copy()
                m.sealed_max_ts[int(h)] = t
        return m

    def snapshot(self) -> dict:
        """The open hour inline; the sealed hours are written apart, once each (by their hour)."""
        return {"open_hour": self.open_hour, "open": self.open_bytes(), "open_max_ts": self.open_max_ts,
                "sealed_max_ts": dict(self.sealed_max_ts)}
