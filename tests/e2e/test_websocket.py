"""WebSockets through nginx: a message reaches each member of its room exactly once, and only them.

Under supervisor, ASGI_WORKERS Daphne processes share one socket; a room whose members sit on
different processes still gets every message once, carried between them by Redis.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from uuid import uuid4

import pytest

from tests.e2e.clients import ChatClient, eventually, join
from tests.e2e.stack import Stack, established_sockets

# Time a duplicate or a stray message would need to show up after the expected ones arrived.
QUIET_SECONDS = 0.5
# Connections spread unevenly over processes sharing a socket: give up on a second PID after this.
MAX_CLIENTS = 40


def unique(prefix: str) -> str:
    """A room name no other test uses."""
    return f"{prefix}-{uuid4().hex[:8]}"


@pytest.mark.e2e
def test_message_reaches_each_member_of_its_room_once(stack: Stack) -> None:
    async def scenario() -> None:
        room, other_room = unique("room"), unique("other")
        members = [await join(stack, room) for _ in range(3)]
        outsiders = [await join(stack, other_room) for _ in range(2)]
        await members[0].say("hello room")
        await eventually(lambda: all(member.messages for member in members))
        await asyncio.sleep(QUIET_SECONDS)
        assert [member.messages for member in members] == [["hello room"]] * 3
        assert [outsider.frames for outsider in outsiders] == [[], []]
        frame = members[2].frames[0]
        assert sorted(frame) == ["message", "sent_at", "type"]
        assert datetime.fromisoformat(frame["sent_at"]).utcoffset() is not None
        await asyncio.gather(*(client.close() for client in members + outsiders))

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.e2e
@pytest.mark.process_managers("supervisor")
def test_room_spans_daphne_processes_through_redis(stack: Stack) -> None:
    workers = int(stack.env["ASGI_WORKERS"])
    assert workers >= 2, "the default bake runs two Daphne processes"
    pids = stack.daphne_pids()
    assert len(pids) == workers
    port = int(stack.env["ASGI_PORT"])

    async def scenario() -> None:
        room = unique("spread")
        clients: list[ChatClient] = []
        serving: list[int] = []  # serving[i]: the Daphne process that holds clients[i]
        held = established_sockets(pids, port)
        while len(set(serving)) < 2 or len(clients) < 4:
            assert len(clients) < MAX_CLIENTS, f"{MAX_CLIENTS} clients all on {set(serving)}"
            clients.append(await join(stack, room))
            now = established_sockets(pids, port)
            gained = [pid for pid in pids if now[pid] - held[pid]]
            assert len(gained) == 1, f"new connection on {gained}: {now}"
            serving.append(gained[0])
            held = now
        # One message from a client of each process: every member gets both, once.
        senders = {pid: clients[serving.index(pid)] for pid in set(serving)}
        texts = [f"from daphne pid {pid}" for pid in senders]
        for pid, sender in senders.items():
            await sender.say(f"from daphne pid {pid}")
        await eventually(lambda: all(len(client.messages) >= len(texts) for client in clients))
        await asyncio.sleep(QUIET_SECONDS)
        received = {index: sorted(client.messages) for index, client in enumerate(clients)}
        assert received == {index: sorted(texts) for index in range(len(clients))}, serving
        await asyncio.gather(*(client.close() for client in clients))

    asyncio.run(asyncio.wait_for(scenario(), 60))
