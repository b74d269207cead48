"""Load: 200 WebSocket clients in 20 rooms, 5 messages each; every delivery exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from uuid import uuid4

import pytest

from tests.e2e.clients import ChatClient, eventually, join
from tests.e2e.stack import Stack

ROOMS = 20
MEMBERS_PER_ROOM = 10
MESSAGES_PER_CLIENT = 5
# At most this many handshakes in flight, so the test measures the chat, not the accept queue.
CONCURRENT_HANDSHAKES = 50
DELIVERY_TIMEOUT = 60
QUIET_SECONDS = 1.0


@pytest.mark.e2e
def test_two_hundred_clients_in_twenty_rooms(stack: Stack) -> None:
    sizes = stack.log_sizes()

    async def scenario() -> None:
        tag = uuid4().hex[:6]
        rooms = [f"load-{tag}-{number}" for number in range(ROOMS)]
        handshakes = asyncio.Semaphore(CONCURRENT_HANDSHAKES)

        async def member(room: str) -> ChatClient:
            async with handshakes:
                return await join(stack, room)

        clients = await asyncio.gather(
            *(member(room) for room in rooms for _ in range(MEMBERS_PER_ROOM))
        )
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
