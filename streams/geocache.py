"""The zones' geometry, prepared once and kept on disk: the H3 zone index and the reach cell sets.

Building them for a city (412 zones, districts of hundreds of km²) takes seconds to tens of
seconds of CPU; a worker taking partitions over after a crash cannot wait that long (issue 11:
takeover in seconds). The first worker to start builds them and saves them in its data folder
(ZONEWATCH_DATADIR) under a name derived from the zones file's bytes, the index resolution and
GEOMETRY_VERSION; every later start with the same file loads them in well under a second. A
missing, stale or unreadable file is simply rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
from pathlib import Path

from contract.zones import Zone

from .reach import ZoneCells, zone_cells
from .zone_index import ZoneIndex

log = logging.getLogger("zonewatch.geometry")

#: bump when ZoneIndex or zone_cells change what they compute
GEOMETRY_VERSION = 1


def cache_path(datadir: str | Path, zones_file: str | Path, resolution: int, id_property: str | None) -> Path:
    h = hashlib.sha256()
    h.update(Path(zones_file).read_bytes())
    h.update(f"|{resolution}|{id_property or ''}|{GEOMETRY_VERSION}".encode())
    return Path(datadir) / f"geometry-{h.hexdigest()[:20]}.pickle"


def prepare(zones: list[Zone], resolution: int, path: Path | None) -> tuple[ZoneIndex, dict[str, ZoneCells]]:
    """(zone index, reach cells by zone id), from the cache file when it is there."""
    if path is not None and path.is_file():
        try:
            started = time.monotonic()
            with open(path, "rb") as f:
                index, cells = pickle.load(f)
            if set(index.zones) == {z.zone_id for z in zones}:
                log.info("zone geometry loaded from %s in %.2fs", path, time.monotonic() - started)
                return index, cells
        except Exception as exc:  # a truncated or foreign file: rebuild it
            log.warning("zone geometry cache %s unusable (%s); rebuilding", path, exc)
    started = time.monotonic()
    index = ZoneIndex(zones, resolution)
    cells = {z.zone_id: zone_cells(z) for z in zones}
    log.info("zone geometry built in %.2fs (%d zones)", time.monotonic() - started, len(zones))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                pickle.dump((index, cells), f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot save the zone geometry cache %s: %s", path, exc)
    return index, cells
