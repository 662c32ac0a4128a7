"""PartitionOutputs (streams/outputs.py): a partition's deliveries in decision order, and the records
queued while an earlier delivery is under way joined into one send (one transaction of the
partition's producer, streams/kafka_fence.py). Checked against the order things were queued in:
every record sent once, in that order, a commit after everything queued before it and before
everything queued after it, and no send mixing two tenures."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.outputs import PartitionOutputs


class Kafka:
    """The send under PartitionOutputs: what it got, in order; it holds each send until released."""

    def __init__(self):
        self.sends: list[tuple[int | None, list]] = []
        self.log: list = []           # records and commits in the order they were done
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, p, tenure, items) -> bool:
        await self.gate.wait()
        self.sends.append((tenure, list(items)))
        self.log.extend(items)
        return True


async def _ready(records):
    return records


def test_records_queued_behind_a_delivery_under_way_go_out_in_one_send():
    async def run():
        kafka = Kafka()
        q = PartitionOutputs(0, kafka.send)
        after: list[str] = []
        kafka.gate.clear()                                   # Kafka slow: the first send waits
        q.put_records(1, lambda: _ready(["a"]))
        await asyncio.sleep(0)                               # the first delivery is under way
        q.put_records(1, lambda: _ready(["b", "c"]), lambda: after.append("bc"))
        q.put_records(1, lambda: _ready(["d"]))
        assert q.queued == 3
        kafka.gate.set()
        await q.drained()
        assert kafka.sends == [(1, ["a"]), (1, ["b", "c", "d"])]
        assert after == ["bc"] and q.queued == 0

    asyncio.run(run())


def test_a_failing_maker_loses_only_its_own_records():
    async def boom():
        raise RuntimeError("a bug")

    async def run():
        kafka = Kafka()
        q = PartitionOutputs(0, kafka.send)
        kafka.gate.clear()
        q.put_records(1, lambda: _ready(["a"]))
        await asyncio.sleep(0)
        q.put_records(1, boom)
        q.put_records(1, lambda: _ready(["b"]))
        kafka.gate.set()
        await q.drained()
        assert kafka.sends == [(1, ["a"]), (1, ["b"])] and q.queued == 0

    asyncio.run(run())


# a queue of: ("r", tenure, n records) | ("c",) a commit | ("s",) let Kafka run a step
ops = st.lists(st.one_of(st.tuples(st.just("r"), st.sampled_from([1, 2]), st.integers(0, 3)),
                         st.just(("c",)), st.just(("s",))), max_size=40)


@settings(max_examples=150, deadline=None)
@given(ops=ops, slow=st.booleans())
def test_any_queue_is_delivered_in_order_once_and_never_across_a_commit_or_tenure(ops, slow):
    async def run():
        kafka = Kafka()
        q = PartitionOutputs(0, kafka.send)
        if slow:
            kafka.gate.clear()
        expected: list = []
        n = 0
        for op in ops:
            if op[0] == "s":
                kafka.gate.set()
                await asyncio.sleep(0)
                if slow:
                    kafka.gate.clear()
                continue
            if op[0] == "c":
                tag = ("commit", len(expected))

                async def commit(tag=tag):
                    kafka.log.append(tag)

                q.put(commit)
                expected.append(tag)
                continue
            _r, tenure, count = op
            recs = [(tenure, n + i) for i in range(count)]
            n += count
            q.put_records(tenure, lambda recs=recs: _ready(recs))
            expected.extend(recs)
        kafka.gate.set()
        await q.drained()
        assert kafka.log == expected                      # every record once, commits in place
        for tenure, items in kafka.sends:                 # one tenure per send
            assert all(t == tenure for t, _i in items)
        assert q.queued == 0

    asyncio.run(run())
