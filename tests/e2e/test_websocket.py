"""WebSockets through nginx: a message reaches each member of its room exactly once, and only them.

(That a room spanning several Daphne processes still gets every message once is proven on real
containers, for both process managers: tests/containers/test_containers_stack.py.)
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from harness.stack import Stack
from tests.e2e.clients import eventually, join, unique

# Time a duplicate or a stray message would need to show up after the expected ones arrived.
QUIET_SECONDS = 0.5


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
