"""The pub/sub layer (config/channel_layer.py) against real Redis faults: a Redis killed and
started again, and a Redis that goes silent without closing its connections (its container gone,
a network cut). After each, every member of a room hears the room again, and the layer says
what happened in a WARNING line or two, never an ERROR."""

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from chat.tests.conftest import RedisServer
from config import channel_layer
from config.channel_layer import ResilientPubSubChannelLayer
from config.settings import redis_channel_layer

MEMBERS = 6
RESTARTS = 3
HEARD_WITHIN_SECONDS = 15


class Room:
    """`MEMBERS` channels of one layer in one group, each collecting what it receives."""

    def __init__(self, layer: ResilientPubSubChannelLayer) -> None:
        self.layer = layer
        self.received: list[list[int]] = [[] for _ in range(MEMBERS)]
        self.tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "Room":
        for inbox in self.received:
            channel = await self.layer.new_channel()
            await self.layer.group_add("room", channel)
            self.tasks.append(asyncio.create_task(self._listen(channel, inbox)))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.layer.flush()

    async def _listen(self, channel: str, inbox: list[int]) -> None:
        while True:
            inbox.append((await self.layer.receive(channel))["n"])

    async def heard_again(self, first: int) -> float:
        """Send numbered messages until every member has received one numbered `first` or more
        (those sent before the layer resubscribed are lost: nobody listened); the seconds taken."""
        started, number = time.monotonic(), first
        while not all(any(n >= first for n in inbox) for inbox in self.received):
            elapsed = time.monotonic() - started
            assert elapsed < HEARD_WITHIN_SECONDS, f"members still deaf: {self.received}"
            try:
                await self.layer.group_send("room", {"type": "chat.message", "n": number})
                number += 1
            except Exception:  # noqa: BLE001, S110 - Redis not back yet: try again
                pass
            await asyncio.sleep(0.2)
        return time.monotonic() - started


def resilient_layer(url: str) -> ResilientPubSubChannelLayer:
    config = redis_channel_layer(url, "pubsub")
    assert config["BACKEND"] == "config.channel_layer.ResilientPubSubChannelLayer"
    return ResilientPubSubChannelLayer(**config["CONFIG"])


def layer_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("config.", "channels_redis"))]


async def test_a_join_is_subscribed_when_it_returns(redis_server: RedisServer) -> None:
    """The first join of a process opens the connection itself: a message sent the moment
    group_add returns is heard (the receive loop alone would subscribe a moment later)."""
    layer = resilient_layer(redis_server.url)
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "chat.message", "n": 1})
        assert (await asyncio.wait_for(layer.receive(channel), 2))["n"] == 1
    finally:
        await layer.flush()


async def test_every_member_hears_the_room_after_each_redis_restart(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with asyncio.timeout(120), Room(resilient_layer(redis_server.url)) as room:
        await room.heard_again(0)
        for restart in range(1, RESTARTS + 1):
            redis_server.kill()
            await asyncio.sleep(0.5)
            redis_server.start()
            await room.heard_again(restart * 1000)
    records = layer_records(caplog)
    assert not [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    lost = [r for r in records if "connection lost" in r.getMessage()]
    back = [r for r in records if "back after" in r.getMessage()]
    assert len(lost) == len(back) == RESTARTS, [r.getMessage() for r in records]


class SilencingProxy:
    """A TCP relay to Redis whose `silence()` stops forwarding on every connection it has while
    keeping them open, as a Redis whose container vanished would; new connections go through."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.silenced: list[Callable[[], bool]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    def silence(self) -> None:
        for mute in self.silenced:
            mute()

    async def close(self) -> None:
        self.server.close()

    async def _relay(self, client_reader, client_writer) -> None:
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        muted = False

        def mute() -> bool:
            nonlocal muted
            muted = True
            return muted

        self.silenced.append(mute)

        async def pump(reader, writer) -> None:
            while data := await reader.read(65536):
                if not muted:
                    writer.write(data)
                    await writer.drain()

        await asyncio.gather(
            pump(client_reader, redis_writer),
            pump(redis_reader, client_writer),
            return_exceptions=True,
        )


async def test_a_redis_gone_silent_is_left_for_a_new_connection(
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No FIN, no RST, no reply: only a PONG that never comes tells the layer its connection is
    dead (stock, the process stays deaf for good). Shortened here from 5 s to keep the test
    quick; the publishing side gives up on its silent connection after its socket timeout."""
    monkeypatch.setattr(channel_layer, "IDLE_PING_SECONDS", 0.5)
    monkeypatch.setattr(channel_layer, "PONG_WAIT_SECONDS", 0.5)
    monkeypatch.setattr(channel_layer, "PUBLISH_TIMEOUT_SECONDS", 1.0)
    caplog.set_level(logging.INFO)
    proxy = SilencingProxy(redis_server.port)
    url = await proxy.start()
    try:
        async with asyncio.timeout(60), Room(resilient_layer(url)) as room:
            await room.heard_again(0)
            proxy.silence()
            await room.heard_again(1000)
    finally:
        await proxy.close()
    messages = [r.getMessage() for r in layer_records(caplog)]
    assert any("no PONG" in m for m in messages), messages
    assert not [r.getMessage() for r in layer_records(caplog) if r.levelno >= logging.ERROR]
