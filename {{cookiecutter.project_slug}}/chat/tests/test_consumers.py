"""The chat consumer through the whole ASGI stack (origin check, auth, routing), in memory."""

import json

import pytest
from channels.testing import WebsocketCommunicator

from chat.consumers import MAX_MESSAGE_CHARS
from chat.tests.conftest import ORIGIN, connected
from config.asgi import application


async def test_two_clients_in_a_room_both_get_a_message() -> None:
    """A message is broadcast to every client of the room, the sender included, with a timestamp."""
    async with connected("/ws/chat/lobby/") as alice, connected("/ws/chat/lobby/") as bob:
        await alice.send_to(text_data=json.dumps({"message": "hello"}))
        for client in (alice, bob):
            frame = await client.receive_json_from()
            assert frame["type"] == "message"
            assert frame["message"] == "hello"
            assert frame["sent_at"].endswith("+00:00")


async def test_another_room_gets_nothing() -> None:
    """Rooms are separate: a message in one never reaches another."""
    async with connected("/ws/chat/lobby/") as alice, connected("/ws/chat/other/") as carol:
        await alice.send_to(text_data=json.dumps({"message": "only lobby"}))
        assert (await alice.receive_json_from())["message"] == "only lobby"
        assert await carol.receive_nothing(timeout=0.3)


BAD_FRAMES = [
    pytest.param({"text_data": "not json"}, "not valid JSON", id="not-json"),
    pytest.param({"text_data": "[1, 2]"}, "JSON object", id="not-an-object"),
    pytest.param({"text_data": "{}"}, 'no "message"', id="no-message"),
    pytest.param({"text_data": '{"message": 5}'}, "must be a string", id="wrong-type"),
    pytest.param({"text_data": '{"message": "  "}'}, "must not be empty", id="blank"),
    pytest.param(
        {"text_data": json.dumps({"message": "x" * (MAX_MESSAGE_CHARS + 1)})},
        "too long",
        id="too-long",
    ),
    pytest.param({"text_data": "x" * 1_000_000}, "too large", id="one-megabyte"),
    pytest.param({"bytes_data": b"\x00\x01"}, "binary", id="binary"),
]


async def test_longest_message_passes_even_fully_escaped() -> None:
    """A message of the maximum length is accepted however its client escapes it."""
    longest = "\U0001f600" * MAX_MESSAGE_CHARS  # each is 12 characters in ASCII-only JSON
    async with connected("/ws/chat/lobby/") as client:
        await client.send_to(text_data=json.dumps({"message": longest}))
        assert (await client.receive_json_from())["message"] == longest


@pytest.mark.parametrize(("frame", "error"), BAD_FRAMES)
async def test_bad_frame_gets_an_error_and_the_socket_stays_usable(frame: dict, error: str) -> None:
    """A bad frame is answered with an error naming the problem; the next good one goes through."""
    async with connected("/ws/chat/lobby/") as client:
        await client.send_to(**frame)
        reply = await client.receive_json_from()
        assert reply["type"] == "error"
        assert error in reply["error"]
        await client.send_to(text_data=json.dumps({"message": "still here"}))
        assert (await client.receive_json_from())["message"] == "still here"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"origin", b"http://evil.example")], id="foreign-origin"),
        pytest.param([], id="no-origin"),
    ],
)
async def test_handshake_without_an_allowed_origin_is_refused(headers: list) -> None:
    """AllowedHostsOriginValidator refuses a foreign Origin and a missing one."""
    communicator = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=headers)
    accepted, _ = await communicator.connect()
    assert not accepted


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/ws/chat/a b/", id="space"),
        pytest.param("/ws/chat/a/b/", id="slash"),
        pytest.param("/ws/chat/../", id="dot-dot"),
        pytest.param("/ws/chat/caf\u00e9/", id="non-ascii"),
        pytest.param("/ws/chat/" + "x" * 500 + "/", id="500-chars"),
    ],
)
async def test_bad_room_name_gets_an_error_and_is_closed(path: str) -> None:
    """A bad room name is answered with an error frame naming the rule, then closed with 4404."""
    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN])
    accepted, _ = await communicator.connect()
    assert accepted
    reply = await communicator.receive_json_from()
    assert reply["type"] == "error"
    assert "room names are" in reply["error"]
    assert (await communicator.receive_output())["code"] == 4404
