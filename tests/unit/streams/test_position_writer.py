"""streams/ingest.py PositionWriter: unit positions written behind the routing, coalesced, and each
batch's future resolved only once a write holding its positions completed (ingest's commit waits
for it, so a restarted ingest reads every position it committed past)."""

from __future__ import annotations

import asyncio

from streams.ingest import PositionWriter


class SlowStore:
    """Writes complete when the test says so; records what each write held."""

    def __init__(self):
        self.writes: list[dict] = []
        self.release: list[asyncio.Event] = []

    async def write_positions(self, latest: dict) -> None:
        gate = asyncio.Event()
        self.release.append(gate)
        self.writes.append(dict(latest))
        await gate.wait()


def test_positions_routed_during_a_write_go_in_the_next_one_latest_fix_winning():
    async def main():
        store = SlowStore()
        w = PositionWriter(store)
        first = w.add({"u1": (1, 0.0, 0.0, "available", "car")})
        await asyncio.sleep(0)
        assert store.writes == [{"u1": (1, 0.0, 0.0, "available", "car")}]
        second = w.add({"u2": (2, 0.0, 0.0, "available", "car")})
        third = w.add({"u1": (3, 1.0, 1.0, "busy", "car")})
        await asyncio.sleep(0)
        assert len(store.writes) == 1, "one write in flight at a time"
        assert not first.done() and not second.done()
        store.release[0].set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert first.done() and not second.done() and not third.done()
        assert store.writes[1] == {"u1": (3, 1.0, 1.0, "busy", "car"), "u2": (2, 0.0, 0.0, "available", "car")}
        store.release[1].set()
        await asyncio.gather(second, third)
        assert len(store.writes) == 2

    asyncio.run(main())


def test_a_batch_after_the_writer_went_idle_starts_a_new_write():
    async def main():
        store = SlowStore()
        w = PositionWriter(store)
        f1 = w.add({"u1": (1, 0.0, 0.0, "available", "car")})
        await asyncio.sleep(0)
        store.release[0].set()
        await f1
        f2 = w.add({"u1": (2, 0.0, 0.0, "available", "car")})
        await asyncio.sleep(0)
        assert store.writes[-1] == {"u1": (2, 0.0, 0.0, "available", "car")}
        store.release[1].set()
        await f2

    asyncio.run(main())
