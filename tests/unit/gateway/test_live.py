"""A client's end unregisters it and ends its writer, whatever the writer awaits — also when the
cancellation is lost inside a Redis call (issue 16: redis-py can swallow one; the old gateway then
kept such a writer fanning out to a dead socket forever). No Redis: a fake one that swallows
cancellations."""

from __future__ import annotations

import asyncio

import pytest

from gateway import live
from gateway.feed import PING, Hub, Subscriber, parse_last_event_id
from gateway.metrics import CLIENTS, WRITERS


def gauge(g, transport="sse") -> float:
    return g.labels(transport)._value.get()


class SwallowingRedis:
    """Just enough of redis.asyncio for Hub.snapshot/incidents. While `gate` is closed, every call
    blocks and swallows any cancellation, as redis-py sometimes does."""

    def __init__(self):
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.swallowed = 0

    async def _wait(self):
        self.entered.set()
        while not self.gate.is_set():
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.swallowed += 1

    def pipeline(self, transaction=False):
        redis, calls = self, []

        class Pipe:
            def __getattr__(self, name):
                return lambda *a, **k: calls.append(name)

            async def execute(self, raise_on_error=True):
                await redis._wait()
                return [[] if c.startswith("x") else ({} if c == "hgetall" else set()) for c in calls]

        return Pipe()

    async def mget(self, keys):
        await self._wait()
        return []


async def _client(hub: Hub, sent: list, disconnect: asyncio.Event, last_id=None):
    async def write(sub: Subscriber):
        async for batch in live._feed(hub, sub, last_id):
            sent.append([k for k, _ in batch])

    await live.serve_client(hub, "sse", write, disconnect.wait())


def test_a_client_gone_during_a_redis_call_that_swallows_the_cancel_is_released(monkeypatch):
    monkeypatch.setattr(live, "WRITER_GRACE_S", 0.2)

    async def scenario():
        redis = SwallowingRedis()
        hub = Hub(redis)
        sent: list = []
        disconnect = asyncio.Event()
        before_clients, before_writers = gauge(CLIENTS), gauge(WRITERS)
        task = asyncio.create_task(_client(hub, sent, disconnect))
        await asyncio.wait_for(redis.entered.wait(), 5)        # the writer is inside the snapshot
        assert len(hub.subs) == 1 and gauge(CLIENTS) == before_clients + 1
        disconnect.set()                                       # the client hangs up
        await asyncio.wait_for(task, 5)                        # its end does not wait for Redis
        assert redis.swallowed >= 1                            # the cancel was lost ...
        assert hub.subs == set() and gauge(CLIENTS) == before_clients   # ... it is unregistered anyway
        assert gauge(WRITERS) == before_writers + 1            # its writer is still in the Redis call
        redis.gate.set()                                       # Redis answers at last
        for _ in range(50):
            if gauge(WRITERS) == before_writers:
                break
            await asyncio.sleep(0.01)
        assert gauge(WRITERS) == before_writers                # and the writer ends, sending nothing
        assert sent == []

    asyncio.run(scenario())


def test_a_client_gone_while_live_ends_its_writer_and_is_unregistered():
    async def scenario():
        redis = SwallowingRedis()
        redis.gate.set()
        hub = Hub(redis)
        sent: list = []
        disconnect = asyncio.Event()
        before_writers = gauge(WRITERS)
        task = asyncio.create_task(_client(hub, sent, disconnect))
        for _ in range(100):
            if sent:
                break
            await asyncio.sleep(0.01)
        assert sent == [["snapshot", "incidents"]]
        (sub,) = hub.subs
        sub.ping()
        for _ in range(100):
            if len(sent) == 2:
                break
            await asyncio.sleep(0.01)
        assert sent[1] == ["ping"]
        disconnect.set()
        await asyncio.wait_for(task, 5)
        assert hub.subs == set() and sub.closed and gauge(WRITERS) == before_writers

    asyncio.run(scenario())


def test_a_writer_that_fails_unregisters_its_client():
    async def scenario():
        redis = SwallowingRedis()
        redis.gate.set()
        hub = Hub(redis)

        async def write(sub):
            raise OSError("connection reset")

        never = asyncio.Event()
        await asyncio.wait_for(live.serve_client(hub, "ws", write, never.wait()), 5)
        assert hub.subs == set() and gauge(CLIENTS, "ws") == 0 and gauge(WRITERS, "ws") == 0

    asyncio.run(scenario())


def test_unregistering_ends_the_live_feed_waiting_or_with_a_full_queue():
    async def scenario():
        redis = SwallowingRedis()
        redis.gate.set()
        hub = Hub(redis, queue_size=2)
        for full in (False, True):
            sub = hub.register("sse")
            feed = hub.messages(sub, None)
            assert [k for k, _ in await feed.__anext__()] == ["snapshot", "incidents"]
            if full:
                sub.queue.put_nowait(PING)
                sub.queue.put_nowait(PING)
            waiting = asyncio.ensure_future(feed.__anext__())   # a writer waiting for its next batch
            await asyncio.sleep(0.01)
            hub.unregister(sub)
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(waiting, 5)
            assert sub.closed and sub not in hub.subs

    asyncio.run(scenario())


@pytest.mark.parametrize("raw", [
    "99999999999999999999-0",            # 20 digits, beyond 64 bits
    "18446744073709551616-0", "1-18446744073709551616",
    "١٢٣-0", "１２３-０", "1-٠",          # Unicode digits (\d would take them)
    "-1-0", "1--0", "1-0-0", "abc", "1", "1-", "-0", "1-0\n", "1 -0", "0x1-0",
])
def test_last_event_id_must_be_two_ascii_64_bit_parts(raw):
    with pytest.raises(ValueError):
        parse_last_event_id(raw)


def test_last_event_id_accepted():
    assert parse_last_event_id(None) is None and parse_last_event_id("") is None and parse_last_event_id(" ") is None
    assert parse_last_event_id("1686440000000-0") == "1686440000000-0"
    assert parse_last_event_id(" 1-2\t") == "1-2"
    top = "18446744073709551615-18446744073709551615"
    assert parse_last_event_id(top) == top
