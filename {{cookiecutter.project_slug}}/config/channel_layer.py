"""channels-redis' pub/sub layer with a receive loop that outlives any Redis fault.

The pub/sub layer keeps, per process, one Redis connection subscribed to everything the process
listens to: every socket's own channel and every room it joined. Stock, redis-py reconnects that
connection behind the layer's back and re-subscribes from its own bookkeeping, while sockets
joining or leaving use the same connection at the same time. After a Redis restart this
sometimes leaves a process listening to nothing, its sockets open and silent, until an unrelated
subscription happens to revive it (about one restart in four on a two-process stack); and a Redis
that vanishes without closing the connection (its container gone, a network cut) leaves every
process deaf for good.

Here that connection is never patched, only replaced whole:
- `_subscribed_to` is what the process wants. Joining and leaving update it first, then tell
  Redis on the live connection; with none (at the first join, or while Redis is down) a join
  tries to open one, so a socket is subscribed before it can send.
- On any error the receive loop throws the connection away and opens a new one that subscribes to
  everything wanted in one command, backing off while Redis is down: one WARNING line when the
  connection is lost, one when it is back. redis-py's own retries are off on it.
- A connection silent for `IDLE_PING_SECONDS` is asked for a PONG and replaced if none comes
  within `PONG_WAIT_SECONDS`; publishing gives up after `PUBLISH_TIMEOUT_SECONDS` (stock, a
  publish to a silent Redis waits for ever, holding the lock every join and publish of the
  process needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from channels_redis import pubsub
from channels_redis.utils import _wrap_close, create_pool
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

logger = logging.getLogger(__name__)

IDLE_PING_SECONDS = 5.0
PONG_WAIT_SECONDS = 5.0
# Reconnection attempts back off from 0.1 s to this.
MAX_BACKOFF_SECONDS = 2.0
# A Redis that stopped answering must not hold the layer's lock, and with it every publish and
# join of the process, for ever: a publish gives up after this and redis-py retries it on a new
# connection. (settings.py turns the socket timeout off for the core layer's blocking reads;
# this layer has none.)
CONNECT_TIMEOUT_SECONDS = 2.0
PUBLISH_TIMEOUT_SECONDS = 5.0


class ResilientShardConnection(pubsub.RedisSingleShardConnection):
    """One Redis server's connections for one process: publishing as stock, receiving here."""

    def __init__(self, host: dict, channel_layer: pubsub.RedisPubSubLoopLayer) -> None:
        super().__init__(host, channel_layer)
        self._listener: aioredis.Redis | None = None  # the client that makes pub/sub connections
        self._heard_at = time.monotonic()
        self._pinged_at: float | None = None

    def _ensure_redis(self) -> None:
        """The publishing client only; `_pubsub` is the receive loop's to open."""
        if self._redis is None:
            publishing_host = {
                **self.host,
                "socket_timeout": PUBLISH_TIMEOUT_SECONDS,
                "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            }
            self._redis = aioredis.Redis(connection_pool=create_pool(publishing_host))

    async def subscribe(self, channel: str) -> None:
        async with self._lock:
            self._ensure_receiver()
            if channel in self._subscribed_to:
                return
            self._subscribed_to.add(channel)
            if self._pubsub is not None:
                await self._tell_redis("subscribe", channel)
                return
            # No connection yet (or Redis is down): open one now, so that a socket that joins a
            # room is subscribed before its first message; failing that, the loop will.
            with contextlib.suppress(Exception):
                await self._connect_locked()

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if channel in self._subscribed_to:
                self._subscribed_to.discard(channel)
                await self._tell_redis("unsubscribe", channel)

    async def _tell_redis(self, command: str, channel: str) -> None:
        """(Un)subscribe now on a live connection; with none, the next one subscribes to what
        `_subscribed_to` holds. A failure drops the connection for the loop to replace."""
        if self._pubsub is None:
            return
        try:
            await getattr(self._pubsub, command)(channel)
        except Exception as error:  # noqa: BLE001 - the receive loop reconnects and resubscribes
            logger.warning("Redis pub/sub %s failed, reconnecting: %s", command, error)
            await self._drop_pubsub()

    async def flush(self) -> None:
        listening = self._pubsub
        await super().flush()  # stops the receive loop, closes the publishing client
        self._pubsub = listening
        await self._drop_pubsub()
        if self._listener is not None:
            await self._listener.aclose()
            self._listener = None

    async def _do_receiving(self) -> None:
        failures, lost_at = 0, 0.0
        while True:
            try:
                if not self._subscribed_to:
                    await asyncio.sleep(0.1)
                    continue
                if self._pubsub is None:
                    async with self._lock:
                        await self._connect_locked()
                if self._pubsub is not None:
                    await self._receive_one()
                    if failures:
                        logger.warning(
                            "Redis pub/sub back after %.1f s: %d channels subscribed again",
                            time.monotonic() - lost_at,
                            len(self._subscribed_to),
                        )
                        failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any fault: a new connection, never a dead loop
                if not failures:
                    lost_at = time.monotonic()
                    logger.warning(
                        "Redis pub/sub connection lost (%s: %s); reconnecting",
                        type(error).__name__,
                        error,
                    )
                failures += 1
                await self._drop_pubsub()
                await asyncio.sleep(min(0.1 * 2 ** (failures - 1), MAX_BACKOFF_SECONDS))

    async def _connect_locked(self) -> None:
        """A new pub/sub connection, subscribed to every channel wanted, in one command (the
        caller holds the lock)."""
        if not self._subscribed_to or self._pubsub is not None:
            return
        if self._listener is None:
            # No retries: redis-py's own reconnect-and-resubscribe is what this class replaces,
            # so every error reaches the loop.
            listener_host = {
                **self.host,
                "retry": Retry(NoBackoff(), 0),
                "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            }
            self._listener = aioredis.Redis(connection_pool=create_pool(listener_host))
        connection = self._listener.pubsub()
        try:
            await connection.subscribe(*self._subscribed_to)
        except BaseException:
            await connection.aclose()
            raise
        self._pubsub = connection
        self._heard_at, self._pinged_at = time.monotonic(), None

    async def _receive_one(self) -> None:
        """Deliver the next message, if one comes within 0.1 s; ping a silent connection."""
        message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        now = time.monotonic()
        if message is not None:
            self._heard_at, self._pinged_at = now, None
            if message["type"] != "pong":
                self._receive_message(message)
        elif self._pinged_at is not None:
            if now - self._pinged_at > PONG_WAIT_SECONDS:
                raise ConnectionError(f"no PONG from Redis within {PONG_WAIT_SECONDS:.0f} s")
        elif now - self._heard_at > IDLE_PING_SECONDS:
            async with self._lock:
                if self._pubsub is not None:
                    await self._pubsub.ping()
            self._pinged_at = now

    async def _drop_pubsub(self) -> None:
        connection, self._pubsub = self._pubsub, None
        if connection is not None:
            # Closing a broken connection may fail; it is gone either way.
            with contextlib.suppress(Exception):
                await connection.aclose()


class ResilientPubSubLoopLayer(pubsub.RedisPubSubLoopLayer):
    """The stock per-event-loop layer, with a resilient connection for each shard."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [ResilientShardConnection(shard.host, self) for shard in self._shards]


class ResilientPubSubChannelLayer(pubsub.RedisPubSubChannelLayer):
    """`channels_redis.pubsub.RedisPubSubChannelLayer`, with the resilient receive loop."""

    def _get_layer(self) -> pubsub.RedisPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        if loop not in self._layers:
            self._layers[loop] = ResilientPubSubLoopLayer(
                *self._args, **self._kwargs, channel_layer=self
            )
            _wrap_close(self, loop)  # closes the loop's layer with the loop, as stock does
        return self._layers[loop]
