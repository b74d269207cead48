"""The chat consumer through the whole ASGI stack (origin check, auth, routing), in memory."""

import json
import logging
import re

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from chat import consumers
from chat.consumers import MAX_MESSAGE_CHARS, ChatConsumer
from chat.rooms import group_name
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
    pytest.param({"text_data": "[" * 5000 + "]" * 5000}, "nested too deeply", id="nested-5000"),
    pytest.param(
        {"text_data": '{"message": ' + "[" * 5000 + "]" * 5000 + "}"},
        "nested too deeply",
        id="nested-message",
    ),
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


def failing_group_send(monkeypatch, failures: int) -> None:
    """Make the channel layer's next `failures` broadcasts raise, as a dead Redis connection
    does; the ones after go through."""
    layer = get_channel_layer()
    real_group_send = layer.group_send
    errors = iter([ConnectionError("connection closed by server")] * failures)

    async def group_send(group: str, message: dict) -> None:
        for error in errors:
            raise error
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", group_send)


async def test_broadcast_meeting_a_broken_connection_is_retried(monkeypatch, caplog) -> None:
    """The first attempt fails (a pooled connection died with a restarted Redis): the retry
    delivers the message, and one warning line says so."""
    failing_group_send(monkeypatch, 1)
    caplog.set_level(logging.WARNING, logger="chat.consumers")
    async with connected("/ws/chat/lobby/") as client:
        await client.send_to(text_data=json.dumps({"message": "delivered anyway"}))
        assert (await client.receive_json_from())["message"] == "delivered anyway"
    records = [r for r in caplog.records if r.name == "chat.consumers"]
    assert [(r.levelname, r.exc_info) for r in records] == [("WARNING", None)]
    assert "retried" in records[0].getMessage()


async def test_lost_broadcast_is_reported_to_the_sender_and_counted(monkeypatch, caplog) -> None:
    """Both attempts fail: the sender gets an error frame, the loss is counted in a log line
    without a traceback, and the socket stays usable."""
    failing_group_send(monkeypatch, 2)
    caplog.set_level(logging.WARNING, logger="chat.consumers")
    async with connected("/ws/chat/lobby/") as client:
        await client.send_to(text_data=json.dumps({"message": "lost"}))
        reply = await client.receive_json_from()
        assert reply == consumers.NOT_DELIVERED
        await client.send_to(text_data=json.dumps({"message": "still here"}))
        assert (await client.receive_json_from())["message"] == "still here"
    records = [r for r in caplog.records if r.name == "chat.consumers"]
    assert [(r.levelname, r.exc_info) for r in records] == [("WARNING", None)] * 2
    assert re.search(r"message lost \(\d+ in this process so far\)", records[1].getMessage())


async def test_unexpected_error_answers_the_client_and_logs_one_line(monkeypatch, caplog) -> None:
    """A frame whose handling fails unexpectedly gets an error frame and one warning line
    without a traceback, and the socket stays usable."""
    real_parse = consumers.parse_frame
    calls = iter([ValueError("surprise")])

    def parse_failing_once(text_data: str | None, bytes_data: bytes | None) -> str:
        for error in calls:
            raise error
        return real_parse(text_data, bytes_data)

    monkeypatch.setattr(consumers, "parse_frame", parse_failing_once)
    caplog.set_level(logging.WARNING, logger="chat.consumers")
    async with connected("/ws/chat/lobby/") as client:
        await client.send_to(text_data=json.dumps({"message": "odd"}))
        reply = await client.receive_json_from()
        assert reply["type"] == "error"
        assert "could not handle" in reply["error"]
        await client.send_to(text_data=json.dumps({"message": "still here"}))
        assert (await client.receive_json_from())["message"] == "still here"
    records = [r for r in caplog.records if r.name == "chat.consumers"]
    assert [(r.levelname, r.exc_info) for r in records] == [("WARNING", None)]
    assert "ValueError: surprise" in records[0].getMessage()


async def test_a_consumer_that_dies_leaves_its_group(monkeypatch) -> None:
    """Whatever ends a consumer, it leaves its room's group (a stale member leaks a Redis
    subscription per socket). Here delivering a broadcast fails and ends the consumer."""

    async def broken_delivery(self, event: dict) -> None:
        raise RuntimeError("delivery failed")

    monkeypatch.setattr(ChatConsumer, "chat_message", broken_delivery)
    layer = get_channel_layer()
    communicator = WebsocketCommunicator(application, "/ws/chat/doomed/", headers=[ORIGIN])
    accepted, _ = await communicator.connect()
    assert accepted
    assert layer.groups.get(group_name("doomed"))
    await communicator.send_to(text_data=json.dumps({"message": "boom"}))
    with pytest.raises(RuntimeError, match="delivery failed"):
        await communicator.wait(timeout=2)
    assert not layer.groups.get(group_name("doomed"))


async def test_message_redis_dropped_is_reported_to_its_sender(monkeypatch, caplog) -> None:
    """A broadcast the layer accepted but never delivered (Redis had no subscription yet) does
    not come back to its sender, who is told so; a delivered one raises nothing."""
    monkeypatch.setattr(consumers, "ECHO_SECONDS", 0.2)
    layer = get_channel_layer()
    real_group_send = layer.group_send
    dropped = iter([True])

    async def group_send(group: str, message: dict) -> None:
        if next(dropped, False):
            return  # accepted, and lost
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", group_send)
    caplog.set_level(logging.WARNING, logger="chat.consumers")
    async with connected("/ws/chat/lobby/") as client:
        await client.send_to(text_data=json.dumps({"message": "vanishes"}))
        assert await client.receive_json_from(timeout=2) == consumers.NOT_DELIVERED
        await client.send_to(text_data=json.dumps({"message": "arrives"}))
        assert (await client.receive_json_from())["message"] == "arrives"
        assert await client.receive_nothing(timeout=0.5)
    lines = [r.getMessage() for r in caplog.records if r.name == "chat.consumers"]
    assert len(lines) == 1
    assert "no copy came back" in lines[0]


async def test_joining_a_room_meeting_a_broken_connection_is_retried(monkeypatch, caplog) -> None:
    """The first group_add after a Redis restart fails on a dead pooled connection: the retry
    joins the room, and the socket chats."""
    layer = get_channel_layer()
    real_group_add = layer.group_add
    errors = iter([ConnectionError("connection closed by server")])

    async def group_add(group: str, channel: str) -> None:
        for error in errors:
            raise error
        await real_group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", group_add)
    caplog.set_level(logging.WARNING, logger="chat.consumers")
    async with connected("/ws/chat/lobby/") as client:
        await client.send_to(text_data=json.dumps({"message": "joined"}))
        assert (await client.receive_json_from())["message"] == "joined"
    lines = [r.getMessage() for r in caplog.records if r.name == "chat.consumers"]
    assert len(lines) == 1
    assert "joining a room retried once" in lines[0]


async def test_room_that_cannot_be_joined_refuses_the_handshake(monkeypatch, caplog) -> None:
    """Both attempts fail: the handshake is refused, with one log line and no traceback."""
    layer = get_channel_layer()

    async def group_add(group: str, channel: str) -> None:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(layer, "group_add", group_add)
    caplog.set_level(logging.WARNING, logger="chat.consumers")
    communicator = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=[ORIGIN])
    accepted, _ = await communicator.connect()
    assert not accepted
    records = [r for r in caplog.records if r.name == "chat.consumers"]
    assert [(r.levelname, r.exc_info) for r in records] == [("WARNING", None)] * 2
    assert "handshake refused" in records[1].getMessage()
