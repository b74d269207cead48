"""Bad input at run time, through nginx: each gets a clear error or refusal, never a traceback,
and the other members of a room keep chatting."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import InvalidStatus

from harness.clients import open_ws, room_path
from harness.stack import NGINX_UPSTREAM_RESET, Stack
from tests.e2e.clients import ChatClient, eventually, join, unique

QUIET_SECONDS = 0.5
# Daphne drops connections sending frames above 1 MiB; this one is just under, so the consumer
# itself must refuse it.
ONE_MEGABYTE = 1_000_000
BIG_FRAME = '{"message": "' + "x" * (ONE_MEGABYTE - len('{"message": ""}')) + '"}'

BAD_FRAMES: dict[str, str | bytes] = {
    "not-json": "hello, this is not JSON",
    "no-message": json.dumps({"text": "hi"}),
    "wrong-type": json.dumps({"message": 42}),
    "not-an-object": json.dumps(["message", "hi"]),
    "blank-message": json.dumps({"message": "   "}),
    "one-megabyte": BIG_FRAME,
    "binary": b"\x00\xffnot text",
    # 10 KB that nests past the JSON parser's recursion limit.
    "nested-5000": "[" * 5000 + "]" * 5000,
}
# Sockets that each send a frame that once crashed the consumer, in a room of their own, then
# leave: none may stay subscribed.
LEAK_PROBES = 50
BAD_ROOMS = {
    "slash": "a/b",
    "dot-dot": "..",
    "space": "a b",
    "500-characters": "r" * 500,
    "non-ascii": "caf\u00e9",
}


async def still_chatting(first: ChatClient, second: ChatClient, tag: str) -> None:
    """Both clients send one message; each gets both, exactly once, and no error."""
    texts = [f"{tag} one", f"{tag} two"]
    before = [list(first.messages), list(second.messages)]
    await first.say(texts[0])
    await second.say(texts[1])
    await eventually(
        lambda: all(
            len(c.messages) >= len(b) + 2 for c, b in zip((first, second), before, strict=True)
        )
    )
    await asyncio.sleep(QUIET_SECONDS)
    for client, earlier in zip((first, second), before, strict=True):
        assert sorted(client.messages[len(earlier) :]) == texts


@pytest.mark.e2e
@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_bad_frame_gets_an_error_and_the_room_goes_on(stack: Stack, frame: str | bytes) -> None:
    sizes = stack.log_sizes()

    async def scenario() -> None:
        room = unique("bad-frame")
        sender, bystander = await join(stack, room), await join(stack, room)
        await sender.websocket.send(frame)
        await eventually(lambda: sender.errors, what="an error frame")
        await asyncio.sleep(QUIET_SECONDS)
        assert len(sender.errors) == 1, sender.frames
        assert not sender.closed, f"closed with {sender.close_code}"
        assert bystander.frames == []
        # The sender's socket still works, and the room never noticed.
        await still_chatting(sender, bystander, "after")
        assert bystander.errors == []
        await asyncio.gather(sender.close(), bystander.close())

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert stack.errors_since(sizes) == []


@pytest.mark.e2e
@pytest.mark.parametrize("room", BAD_ROOMS.values(), ids=BAD_ROOMS.keys())
def test_bad_room_name_is_refused_clearly(stack: Stack, room: str) -> None:
    sizes = stack.log_sizes()

    async def scenario() -> None:
        good_room = unique("neighbours")
        first, second = await join(stack, good_room), await join(stack, good_room)
        refused_with = None
        try:
            websocket = await open_ws(stack, room_path(room))
        except InvalidStatus as refused:
            refused_with = refused.response.status_code
        if refused_with is not None:
            assert 400 <= refused_with < 500
        else:
            # Accepted, told why, closed with the application's "not found" code.
            client = ChatClient(websocket, room)
            await eventually(lambda: client.closed, what="the server closing the socket")
            assert client.close_code == 4404
            assert len(client.errors) == 1, client.frames
            assert "room names are" in client.errors[0]
            assert client.messages == []
        await still_chatting(first, second, "neighbours")
        assert first.errors == second.errors == []
        await asyncio.gather(first.close(), second.close())

    asyncio.run(asyncio.wait_for(scenario(), 60))
    # The server closed the socket: nginx logs autobahn's reset (see NGINX_UPSTREAM_RESET).
    assert stack.errors_since(sizes, allow=NGINX_UPSTREAM_RESET) == []


@pytest.mark.e2e
def test_sockets_that_sent_nested_frames_leave_nothing_in_redis(stack: Stack) -> None:
    sizes = stack.log_sizes()
    before = stack.redis_subscriptions()

    async def scenario() -> None:
        for _ in range(LEAK_PROBES):
            client = await join(stack, unique("leak"))
            await client.websocket.send(BAD_FRAMES["nested-5000"])
            await eventually(lambda client=client: client.errors, what="the error frame")
            assert "nested too deeply" in client.errors[0]
            await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))

    def settled() -> bool:
        return stack.redis_subscriptions() <= before

    asyncio.run(eventually(settled, what=lambda: f"{stack.redis_subscriptions()} > {before}"))
    assert stack.errors_since(sizes) == []
