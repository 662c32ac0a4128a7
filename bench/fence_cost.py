"""`python -m bench.fence_cost`: what the Kafka fence (streams/kafka_fence.py) costs a partition's sends.

The same output batches are sent two ways on a stack of its own, alternating in rounds so that both
see the same machine: (a) as outputs.py sent them before the fence — a plain idempotent producer,
acks=all, every acknowledgement awaited; (b) `KafkaFence.send` — one transaction per batch through
the partition's transactional producer (AddPartitionsToTxn, the records, EndTxn). Four batch shapes,
deliveries of a partition's `PartitionOutputs`: an emit's records (2 incidents.enriched of ~1 KB, 2
sla.events, 1 arrival batch), a flush's zones.state documents (40 of ~1.5 KB), a single small record
(a zones.daily rewrite of one zone, ~600 bytes: the fixed cost of a transaction), and ten emits
joined into one delivery (what a partition sends after a slow one). Printed per shape and way: wall
time per batch (median, p90) and the process' CPU per batch, and the ratios (b)/(a). None of it is
on the apply path: the deliveries run off it (streams/outputs.py), and a partition applies on while
they wait.

    python -m bench.fence_cost [--batches 300] [--kafka-port P --redis-port P]

The stack is .stack/fence-cost on ports 22094/22381 unless told, so a test run is untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contract import topics  # noqa: E402
from contract.kafka_settings import aiokafka_kwargs, ensure_topics  # noqa: E402
from contract.settings import Settings  # noqa: E402
from deploy import stack as stack_module  # noqa: E402
from streams.kafka_fence import KafkaFence, OutRecord  # noqa: E402

ROUND = 20   # batches of one way before switching to the other


def shapes(s: Settings) -> dict[str, list[OutRecord]]:
    enriched, sla, zones = s.topic(topics.INCIDENTS), s.topic(topics.SLA), s.topic(topics.ZONES_STATE)
    emit: list[OutRecord] = [(enriched, b"call-%d" % i, b"x" * 1000, None) for i in range(2)]
    emit += [(sla, b"call-%d" % i, b"y" * 150, None) for i in range(2)]
    emit.append((s.internal_zone_events, None, b"z" * 120, 1))
    flush: list[OutRecord] = [(zones, b"zone-%d" % i, b"d" * 1500, None) for i in range(40)]
    one: list[OutRecord] = [(s.topic(topics.ZONES_DAILY), b"2024-05-01|zone-1", b"w" * 600, None)]
    # what a partition behind one slow delivery sends next: ten emits joined (PartitionOutputs.put_records)
    return {"emit": emit, "flush of zone documents": flush, "one record": one, "ten emits joined": emit * 10}


async def plain_send(producer: AIOKafkaProducer, items: list[OutRecord]) -> None:
    futures = [await producer.send(t, v, key=k, partition=part) for t, k, v, part in items]
    await asyncio.gather(*futures)


async def measure(s: Settings, batches: int) -> dict:
    plain = AIOKafkaProducer(bootstrap_servers=s.kafka, acks="all", enable_idempotence=True, linger_ms=0,
                             **aiokafka_kwargs(s))
    fence = KafkaFence(s)
    await plain.start()
    await fence.take(0, generation=1)
    out: dict = {}
    try:
        for name, items in shapes(s).items():
            walls: dict[str, list[float]] = {"plain": [], "fenced": []}
            cpu = {"plain": 0.0, "fenced": 0.0}
            for way in ("plain", "fenced"):   # warm both up (connections, metadata, the coordinator)
                for _ in range(5):
                    await (plain_send(plain, items) if way == "plain" else fence.send(0, items))
            while len(walls["fenced"]) < batches:
                for way in ("plain", "fenced"):
                    c0 = time.process_time()
                    for _ in range(ROUND):
                        t0 = time.perf_counter()
                        if way == "plain":
                            await plain_send(plain, items)
                        else:
                            assert await fence.send(0, items)
                        walls[way].append(time.perf_counter() - t0)
                    cpu[way] += time.process_time() - c0
            out[name] = {way: {"median_ms": statistics.median(w) * 1000,
                               "p90_ms": statistics.quantiles(w, n=10)[-1] * 1000,
                               "cpu_ms": cpu[way] / len(w) * 1000} for way, w in walls.items()}
    finally:
        await fence.close()
        await plain.stop()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--kafka-port", type=int, default=22094)
    ap.add_argument("--redis-port", type=int, default=22381)
    ap.add_argument("--keep", action="store_true", help="leave the stack running")
    args = ap.parse_args(argv)
    state = REPO / ".stack" / "fence-cost"
    stack = stack_module.up(kafka_port=args.kafka_port, redis_port=args.redis_port, state_dir=state)
    s = Settings(kafka=stack["kafka"], topic_prefix=f"fence-{uuid.uuid4().hex[:6]}.", app_id="fence-cost", partitions=2)
    ensure_topics(s)
    try:
        res = asyncio.run(measure(s, args.batches))
    finally:
        if not args.keep:
            stack_module.down(state_dir=state)
    for name, r in res.items():
        a, b = r["plain"], r["fenced"]
        print(f"{name:<24} plain: {a['median_ms']:.2f} ms median, {a['p90_ms']:.2f} p90, {a['cpu_ms']:.3f} ms CPU | "
              f"fenced: {b['median_ms']:.2f} ms median, {b['p90_ms']:.2f} p90, {b['cpu_ms']:.3f} ms CPU | "
              f"ratio wall {b['median_ms'] / a['median_ms']:.2f}, CPU {b['cpu_ms'] / a['cpu_ms']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
