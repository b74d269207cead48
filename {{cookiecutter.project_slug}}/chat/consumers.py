"""The WebSocket consumer: one per connected browser, joined to its room's group.

Every frame is checked before it is broadcast; a bad one gets an error frame back and the socket
stays open, so one bad client cannot take its connection (or the process) down.
"""

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from channels.generic.websocket import AsyncWebsocketConsumer

from chat.rooms import ROOM_NAME_RULE, group_name

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000
# A frame this large cannot hold a valid message, even with every character JSON-escaped (an
# astral character is 12: "\ud83d\ude00"); refuse it before parsing it.
MAX_FRAME_CHARS = 12 * MAX_MESSAGE_CHARS + 1024


# Numbers the messages this process knows it lost: not handed to the channel layer even after a
# retry, or never come back to their own sender.
lost_messages = itertools.count(1)
# How long a sender's own copy of its message may take to come back before it is told of a loss.
ECHO_SECONDS = 5.0
NOT_DELIVERED = {"type": "error", "error": "your message may not have been delivered"}


async def retrying_once(what: str, operation: Callable[[], Awaitable[object]]) -> None:
    """Run a channel-layer call; when it fails, log one line and run it once more (whose error,
    if any, is the caller's to handle).

    After a Redis restart, each process's first use of a pooled connection fails: it died with
    the old server. The retry takes a fresh one. (Should a failed publish have reached Redis
    after all, the room sees the message twice.)
    """
    try:
        await operation()
    except Exception as error:  # noqa: BLE001 - see the docstring
        logger.warning("%s retried once: %s: %s", what, type(error).__name__, error)
        await operation()


class FrameError(ValueError):
    """A client frame that cannot be broadcast; its text is sent back to the client."""


def parse_frame(text_data: str | None, bytes_data: bytes | None) -> str:
    """Return the chat message in a client frame, or raise FrameError saying what is wrong."""
    if bytes_data is not None:
        raise FrameError("binary frames are not accepted: send a JSON text frame")
    if text_data is None:
        raise FrameError('empty frame: send a JSON object such as {"message": "hi"}')
    if len(text_data) > MAX_FRAME_CHARS:
        raise FrameError(f"frame too large: at most {MAX_FRAME_CHARS} characters")
    try:
        payload = json.loads(text_data)
    except ValueError:
        raise FrameError('frame is not valid JSON: send {"message": "..."}') from None
    except RecursionError:  # "[" * 5000 fits the size limit and nests past the parser's stack
        raise FrameError('frame is nested too deeply: send {"message": "..."}') from None
    if not isinstance(payload, dict):
        raise FrameError('frame must be a JSON object with a "message" field')
    if "message" not in payload:
        raise FrameError('frame has no "message" field')
    message = payload["message"]
    if not isinstance(message, str):
        raise FrameError('"message" must be a string')
    if not message.strip():
        raise FrameError('"message" must not be empty')
    if len(message) > MAX_MESSAGE_CHARS:
        raise FrameError(f'"message" is too long: at most {MAX_MESSAGE_CHARS} characters')
    return message


class ChatConsumer(AsyncWebsocketConsumer):
    """Broadcasts each valid message to everyone in the room, with a server timestamp."""

    async def connect(self) -> None:
        """Join the room's group, then accept the handshake."""
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.group = group_name(self.room_name)
        self.sent = 0  # this socket's messages so far: each one's token
        self.awaiting_echo: dict[int, asyncio.TimerHandle] = {}  # token -> its loss report
        self.reports: set[asyncio.Task] = set()
        try:
            await retrying_once(
                "joining a room",
                lambda: self.channel_layer.group_add(self.group, self.channel_name),
            )
        except Exception as error:  # noqa: BLE001 - refuse this handshake, say why in one line
            logger.warning(
                "handshake refused, room not joined: %s: %s", type(error).__name__, error
            )
            self.group = None  # nothing to leave
            await self.close()
            return
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the room's group."""
        await self.leave_group()

    async def leave_group(self) -> None:
        """Leave the room's group once, however the socket ended; never raises.

        A consumer that stays in its group after it is gone leaks a Redis subscription (pub/sub
        layer) or a queue that fills until expiry (core layer), for every socket that ends so.
        """
        for waiting in getattr(self, "awaiting_echo", {}).values():
            waiting.cancel()  # the socket is gone: nobody left to tell
        group, self.group = getattr(self, "group", None), None
        if group is None:
            return
        try:
            await self.channel_layer.group_discard(group, self.channel_name)
        except Exception as error:  # noqa: BLE001 - the socket is gone whatever Redis says
            logger.warning("could not leave %s: %s: %s", group, type(error).__name__, error)

    async def __call__(self, scope, receive, send) -> None:
        """Run the consumer; whatever ends it (a close, an error, a cancelled task), leave the
        room's group on the way out."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.leave_group()

    async def websocket_receive(self, message: dict) -> None:
        """Handle one client frame; an unexpected error answers that client and logs one line.

        No frame may end the consumer: an exception here would close the socket with 1011 and
        log a traceback per frame, which any client could repeat in a loop.
        """
        try:
            await super().websocket_receive(message)
        except Exception as error:  # noqa: BLE001 - see the docstring
            logger.warning(
                "frame on %s not handled: %s: %s", self.channel_name, type(error).__name__, error
            )
            await self.send_json(
                {"type": "error", "error": "the server could not handle that frame; try again"}
            )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Broadcast a valid frame to the room; answer a bad one with an error frame."""
        try:
            message = parse_frame(text_data, bytes_data)
        except FrameError as error:
            await self.send_json({"type": "error", "error": str(error)})
            return
        self.sent += 1
        event = {
            "type": "chat.message",
            "message": message,
            "sent_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "sender": self.channel_name,
            "token": self.sent,
        }
        if await self.broadcast(event):
            # The sender is a member of its room: its own copy coming back shows the message
            # went through Redis. None does when Redis dropped it (published in the moment a
            # restarted Redis has no subscriptions yet). A proxy, not a receipt: members on
            # another process may still miss a message whose sender got it back, and a copy
            # later than ECHO_SECONDS is reported though it arrives.
            self.awaiting_echo[self.sent] = asyncio.get_running_loop().call_later(
                ECHO_SECONDS, self.echo_missing, self.sent
            )

    async def broadcast(self, event: dict) -> bool:
        """Hand a message to the room's group, retrying once; False, with the sender told, when
        it could not be."""
        try:
            await retrying_once(
                "broadcast", lambda: self.channel_layer.group_send(self.group, event)
            )
        except Exception as error:  # noqa: BLE001 - the sender must hear of the loss
            self.report_lost(f"{type(error).__name__}: {error}")
            await self.send_json(NOT_DELIVERED)
            return False
        return True

    def echo_missing(self, token: int) -> None:
        """The sender's own copy of message `token` never came back: tell the sender."""
        if self.awaiting_echo.pop(token, None) is not None:
            self.report_lost(f"no copy came back within {ECHO_SECONDS} s")
            task = asyncio.ensure_future(self.send_json(NOT_DELIVERED))
            self.reports.add(task)
            task.add_done_callback(self.reports.discard)

    def report_lost(self, why: str) -> None:
        """One log line per lost message, with this process's running count."""
        logger.warning("message lost (%d in this process so far): %s", next(lost_messages), why)

    async def dispatch(self, message: dict) -> None:
        """Deliver room broadcasts straight to chat_message; everything else as Channels does.

        Channels closes stale database connections before every message a consumer handles, a
        hop to a worker thread each time; a broadcast never touches the database, and skipping
        that hop made Daphne deliver 1.5-3.4 times as many messages a second (measured with the
        template's benchmarks/run.py before the override was adopted).
        """
        if message["type"] == "chat.message":
            await self.chat_message(message)
        else:
            await super().dispatch(message)

    async def chat_message(self, event: dict) -> None:
        """Deliver one room broadcast to this client (its own messages too, which confirms them)."""
        if event.get("sender") == self.channel_name:
            waiting = self.awaiting_echo.pop(event.get("token"), None)
            if waiting is not None:
                waiting.cancel()
        await self.send_json(
            {"type": "message", "message": event["message"], "sent_at": event["sent_at"]}
        )

    async def send_json(self, content: dict) -> None:
        """Send a JSON text frame."""
        await self.send(text_data=json.dumps(content))


class RejectConsumer(AsyncWebsocketConsumer):
    """Answers a WebSocket to an unknown path or a bad room name, then closes it.

    Without it, URLRouter raises for an unmatched path and the server logs a traceback for what is
    only a client mistake.
    """

    async def connect(self) -> None:
        """Accept, say why the path is refused, and close with an application code."""
        path = self.scope.get("path", "")
        await self.accept()
        error = f"no chat room at {path!r}: room names are {ROOM_NAME_RULE}"
        await self.send(text_data=json.dumps({"type": "error", "error": error}))
        await self.close(code=4404)
