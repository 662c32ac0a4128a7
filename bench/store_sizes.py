"""Bytes in Redis and Kafka per zone, unit, incident and input event: the Redis and Kafka figures of
docs/OPERATIONS.md "Sizing", measured on a real Redis and a real Kafka (the `make up` stack, or any
pair nothing else writes to while it runs).

    ZONEWATCH_KAFKA=127.0.0.1:9092 ZONEWATCH_REDIS=redis://127.0.0.1:6379/0 \\
        .venv/bin/python -m bench.store_sizes [--minutes 5] [--redis-db 14]

A district-like stream (bench/state_sizes.py: the soak's mix, 5,200 units over the `city` zone set,
4 partitions) goes through the worker's pure flow (streams/testing.Pipeline), and every 2,000 events
the real StateStage.flush writes what changed to Redis with the worker's Lua script, and the router's
latest positions go through RedisStore.write_positions, as ingest writes them. Then:

- Redis (`--redis-db`, flushed before and after): MEMORY USAGE of each key, per zone document, per
  unit (zw:units, zw:units:available, zw:unit-info), per open incident entry (zw:incidents), per
  incident timeline (zw:incident:*, kept 48 h), per entry of the two update streams (whose length
  is capped: zw:zone-updates at ~100,000, zw:incident-updates at ~10,000), and INFO's used_memory.
- Kafka: the input events as a connector sends them (acks=all, no compression) and the zone-events
  messages the router made, each produced to a fresh topic; their size on the broker's disk (the
  segment files under --kafka-data) divided by the records. Topics deleted afterwards.

Sizes, not times: the figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from pathlib import Path

from contract import keys, redisurl
from contract.settings import Settings, redis_url_from_env
from streams.store import RedisStore

from .state_sizes import city_pipeline, district_mix, stream_msgs, zone_set

REPO = Path(__file__).resolve().parents[1]
FLUSH_EVERY = 2000   # events between two flushes (the worker flushes every 25 ms: more, smaller)


async def redis_sizes(redis_url: str, db: int, minutes: float, units: int) -> tuple[dict, dict]:
    """(Redis figures, the zone-events payloads per partition and the input messages) after the stream."""
    url = redisurl.with_db(redis_url, db)
    r = redisurl.async_client(url)
    await r.flushdb()
    base = (await r.info("memory"))["used_memory"]
    pipe, _n, _cpu = city_pipeline(units, minutes, keep_log=True, with_events=False)
    store = RedisStore(r)
    pipe.stage.store = store
    await store.register_zones(list(pipe.stage.zone_part))
    for p, h in pipe.stage.held.items():
        h.generation = await store.take_partition(p)
    _f, _w, bbox = zone_set("city", Path(os.environ.get("TMPDIR", "/tmp")) / "zw-store-sizes")
    msgs = [m for chunk in stream_msgs(pipe.s, bbox, units, minutes, chunk=FLUSH_EVERY) for m in chunk]
    for i in range(0, len(msgs), FLUSH_EVERY):
        pipe.feed(msgs[i:i + FLUSH_EVERY], batch=500)
        await pipe.stage.flush()
        await store.write_positions(dict(pipe.router.positions))
    pipe.finish()
    await pipe.stage.flush()
    await store.write_positions(dict(pipe.router.positions))
    used = (await r.info("memory"))["used_memory"] - base

    async def usage(key: str) -> int:
        return int(await r.memory_usage(key, samples=0) or 0)

    zone_ids = list(pipe.stage.zone_part)
    zone_bytes = [await usage(keys.zone(z)) for z in zone_ids]
    timelines = [k async for k in r.scan_iter(match=keys.incident("*"), count=1000)]
    tl_bytes = [await usage(k) for k in timelines]
    n_units = await r.zcard(keys.UNITS)
    n_avail = await r.zcard(keys.UNITS_AVAILABLE)
    n_open = await r.hlen(keys.INCIDENTS)
    zlen = await r.xlen(keys.ZONE_UPDATES)
    ilen = await r.xlen(keys.INCIDENT_UPDATES)
    out = {
        "units": units, "minutes": minutes, "events": len(msgs), "zones": len(zone_ids),
        "used_memory": used,
        "zone_doc": round(sum(zone_bytes) / len(zone_bytes)),
        "zone_versions_per_zone": round(await usage(keys.ZONE_VERSIONS) / len(zone_ids)),
        "zones_set_per_zone": round(await usage(keys.ZONES) / len(zone_ids)),
        "unit_geo": round(await usage(keys.UNITS) / max(1, n_units)),
        "unit_available_geo": round(await usage(keys.UNITS_AVAILABLE) / max(1, n_avail)),
        "unit_info": round(await usage(keys.UNIT_INFO) / max(1, n_units)),
        "units_in_redis": n_units, "available_in_redis": n_avail,
        "open_incidents": n_open,
        "incident_entry": round(await usage(keys.INCIDENTS) / n_open) if n_open else None,
        "timelines": len(timelines),
        "timeline": round(sum(tl_bytes) / len(tl_bytes)) if tl_bytes else None,
        "zone_updates_entries": zlen,
        "zone_update_entry": round(await usage(keys.ZONE_UPDATES) / max(1, zlen)),
        "incident_updates_entries": ilen,
        "incident_update_entry": round(await usage(keys.INCIDENT_UPDATES) / max(1, ilen)) if ilen else None,
    }
    out["unit_total"] = out["unit_geo"] + out["unit_info"] + round(out["unit_available_geo"] * n_avail
                                                                   / max(1, n_units))
    out["zone_total"] = out["zone_doc"] + out["zone_versions_per_zone"] + out["zones_set_per_zone"]
    out["zone_updates_at_maxlen"] = out["zone_update_entry"] * keys.ZONE_UPDATES_MAXLEN
    out["incident_updates_at_maxlen"] = (out["incident_update_entry"] or 0) * keys.INCIDENT_UPDATES_MAXLEN
    await r.flushdb()
    await r.aclose()
    assert pipe.log is not None
    return out, {"zone_events": [v for log in pipe.log.values() for v in log], "inputs": msgs}


async def kafka_sizes(s: Settings, data_dir: Path, payloads: dict) -> dict:
    """Bytes on the broker's disk per record of each kind."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    tag = uuid.uuid4().hex[:8]
    topics = {"inputs": f"sizes-{tag}-inputs", "zone_events": f"sizes-{tag}-zone-events"}
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka)
    await admin.start()
    out: dict = {}
    try:
        await admin.create_topics([NewTopic(t, 4, 1) for t in topics.values()])
        prod = AIOKafkaProducer(bootstrap_servers=s.kafka, acks="all", enable_idempotence=True, linger_ms=5,
                                max_batch_size=1 << 20, max_request_size=8 << 20, compression_type=None)
        await prod.start()
        try:
            for m in payloads["inputs"]:
                await prod.send(topics["inputs"], m.value, key=m.key, timestamp_ms=m.timestamp)
            for i, v in enumerate(payloads["zone_events"]):
                await prod.send(topics["zone_events"], v, partition=i % 4)
            await prod.flush()
        finally:
            await prod.stop()
        time.sleep(1.0)
        for kind, t in topics.items():
            size = sum(f.stat().st_size for d in data_dir.glob(f"{t}-*") for f in d.glob("*.log"))
            n = len(payloads[kind])
            payload = sum(len(m.value) for m in payloads["inputs"]) if kind == "inputs" \
                else sum(len(v) for v in payloads["zone_events"])
            out[kind] = {"records": n, "disk_bytes": size, "per_record": round(size / n, 1),
                         "payload_per_record": round(payload / n, 1)}
        n_in = len(payloads["inputs"])
        out["zone_events_per_input_event"] = round(out["zone_events"]["disk_bytes"] / n_in, 1)
    finally:
        await admin.delete_topics(list(topics.values()))
        await admin.close()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="event time of the stream")
    ap.add_argument("--units", type=int, default=5200)
    ap.add_argument("--redis-db", type=int, default=14, help="flushed before and after")
    ap.add_argument("--kafka-data", type=Path, default=None,
                    help="the broker's log.dirs (default: <repo>/.stack/test/kafka/data, else .stack/kafka/data)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    s = Settings.from_env()
    data = a.kafka_data or next((p for p in (REPO / ".stack/test/kafka/data", REPO / ".stack/kafka/data")
                                 if p.is_dir()), None)
    if data is None:
        raise SystemExit("no Kafka data directory found: pass --kafka-data (the broker's log.dirs)")
    rate, _mix = district_mix(a.units)
    redis_out, payloads = asyncio.run(redis_sizes(redis_url_from_env(s.redis), a.redis_db, a.minutes, a.units))
    kafka_out = asyncio.run(kafka_sizes(s, data, payloads))
    out = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rate": round(rate), "redis": redis_out,
           "kafka": kafka_out}
    if a.json:
        print(json.dumps(out, indent=1))
        return
    r, k = redis_out, kafka_out
    print(f"redis after {r['events']:,} events ({r['minutes']:g} min, {r['units']:,} units, {r['zones']} zones): "
          f"used_memory +{r['used_memory'] / 2**20:.1f} MiB; per zone {r['zone_total']} B (document "
          f"{r['zone_doc']}), per unit {r['unit_total']} B (zw:units {r['unit_geo']}, unit-info {r['unit_info']}, "
          f"available {r['unit_available_geo']}), per open incident {r['incident_entry']} B ({r['open_incidents']}), "
          f"per timeline {r['timeline']} B ({r['timelines']}), per zone-updates entry {r['zone_update_entry']} B "
          f"({r['zone_updates_entries']:,}; {r['zone_updates_at_maxlen'] / 2**20:.0f} MiB at its cap), per "
          f"incident-updates entry {r['incident_update_entry']} B", flush=True)
    print(f"kafka on disk: input {k['inputs']['per_record']} B per record ({k['inputs']['payload_per_record']} B "
          f"value), zone-events {k['zone_events']['per_record']} B per message = "
          f"{k['zone_events_per_input_event']} B per input event", flush=True)


if __name__ == "__main__":
    main()
