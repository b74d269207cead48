"""Load: 200 WebSocket clients in 20 rooms, 5 messages each, every delivery exactly once; and
10,000 idle WebSockets held open through nginx, each getting its room's broadcast."""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from uuid import uuid4

import pytest

from harness.processes import rss_kib, tree, wait_until
from harness.stack import Stack
from tests.conftest import report
from tests.e2e.clients import ChatClient, eventually, join, round_trip

ROOMS = 20
MEMBERS_PER_ROOM = 10
MESSAGES_PER_CLIENT = 5
# At most this many handshakes in flight, so the test measures the chat, not the accept queue.
CONCURRENT_HANDSHAKES = 50
DELIVERY_TIMEOUT = 60
QUIET_SECONDS = 1.0


async def join_rooms(stack: Stack, rooms: list[str], per_room: int) -> list[ChatClient]:
    """`per_room` clients in each room, CONCURRENT_HANDSHAKES at a time."""
    handshakes = asyncio.Semaphore(CONCURRENT_HANDSHAKES)

    async def member(room: str) -> ChatClient:
        async with handshakes:
            return await join(stack, room)

    return list(await asyncio.gather(*(member(room) for room in rooms for _ in range(per_room))))


@pytest.mark.e2e
def test_two_hundred_clients_in_twenty_rooms(stack: Stack) -> None:
    sizes = stack.log_sizes()

    async def scenario() -> None:
        rooms = [f"load-{uuid4().hex[:6]}-{number}" for number in range(ROOMS)]
        clients = await join_rooms(stack, rooms, MEMBERS_PER_ROOM)
        expected: dict[str, Counter] = {room: Counter() for room in rooms}

        async def chat(index: int, client: ChatClient) -> None:
            for number in range(MESSAGES_PER_CLIENT):
                text = f"{client.room} client {index} message {number}"
                expected[client.room][text] += 1
                await client.say(text)

        await asyncio.gather(*(chat(index, client) for index, client in enumerate(clients)))
        per_room = MEMBERS_PER_ROOM * MESSAGES_PER_CLIENT
        await eventually(
            lambda: all(len(client.messages) >= per_room for client in clients),
            timeout=DELIVERY_TIMEOUT,
            what=lambda: (
                f"{per_room} messages at each client; clients by count received: "
                f"{sorted(Counter(len(client.messages) for client in clients).items())}"
            ),
        )
        await asyncio.sleep(QUIET_SECONDS)
        wrong = {
            index: {
                "missing": sum((expected[client.room] - Counter(client.messages)).values()),
                "extra": sorted((Counter(client.messages) - expected[client.room]).elements())[:3],
            }
            for index, client in enumerate(clients)
            if Counter(client.messages) != expected[client.room]
        }
        assert wrong == {}
        assert [client.errors for client in clients if client.errors] == []
        await asyncio.gather(*(client.close() for client in clients))

    asyncio.run(asyncio.wait_for(scenario(), DELIVERY_TIMEOUT + 60))
    assert stack.errors_since(sizes) == []


# The bar: a 2-core machine holds this many idle WebSockets through nginx.
IDLE_SOCKETS = 10_000
IDLE_ROOMS = 100


@pytest.mark.e2e
def test_ten_thousand_idle_websockets_each_get_their_rooms_broadcast(stack: Stack) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE_SOCKETS + 1000:  # this client holds one file per socket
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, IDLE_SOCKETS + 1000), hard))
    sizes = stack.log_sizes()
    nginx = stack.servers[stack.nginx_service].pid
    nginx_pids = tree(nginx)
    before = {"nginx": rss_kib(nginx_pids), "daphne": rss_kib(stack.daphne_pids())}
    subscriptions = stack.redis_subscriptions()

    async def scenario() -> dict[str, int]:
        rooms = [f"idle-{uuid4().hex[:6]}-{number}" for number in range(IDLE_ROOMS)]
        clients = await join_rooms(stack, rooms, IDLE_SOCKETS // IDLE_ROOMS)
        held = {"nginx": rss_kib(nginx_pids), "daphne": rss_kib(stack.daphne_pids())}
        await asyncio.sleep(2)  # idle
        assert not [client for client in clients if client.closed]
        senders = {client.room: client for client in clients}
        for room, sender in senders.items():
            await sender.say(f"to everyone in {room}")
        await eventually(
            lambda: all(client.messages for client in clients),
            timeout=DELIVERY_TIMEOUT,
            what=lambda: f"{sum(not c.messages for c in clients)} sockets got nothing",
        )
        assert all(c.messages == [f"to everyone in {c.room}"] for c in clients)
        await asyncio.gather(*(client.close() for client in clients))
        return held

    held = asyncio.run(asyncio.wait_for(scenario(), 300))
    # 10,000 consumers leaving at once queue 10,000 unsubscribes on each process's one Redis
    # connection; until they are through, a new consumer's group_add waits behind them. Leave
    # the stack as the next test expects it.
    wait_until(
        lambda: stack.redis_subscriptions() <= subscriptions,
        timeout=120,
        interval=0.5,
        what="Redis back to its subscriptions before the test",
    )
    assert asyncio.run(round_trip(stack, f"after-{uuid4().hex[:6]}", "after", timeout=5))
    assert stack.errors_since(sizes) == []
    per_socket = {role: (held[role] - before[role]) / IDLE_SOCKETS for role in held}
    report(
        f"native {stack.process_manager}: {IDLE_SOCKETS} idle WebSockets through nginx, each "
        f"got its room's broadcast; memory per socket: nginx {per_socket['nginx']:.1f} KiB, "
        f"Daphne {per_socket['daphne']:.1f} KiB (RSS growth / sockets)"
    )
